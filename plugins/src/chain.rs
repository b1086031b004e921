//! A location's plugins in run order, and the runner for each phase.

use std::sync::Arc;

use bytes::Bytes;
use pingora_http::{RequestHeader, ResponseHeader};

use crate::{Ctx, Flow, Instance, Phase, Phases, PluginError};

/// The plugins of one location, sorted once (at config compile time) by priority, highest first;
/// plugins of equal priority keep the order in which the location lists them.
#[derive(Clone, Default)]
pub struct Chain {
    entries: Box<[Entry]>,
    phases: Phases,
}

#[derive(Clone)]
struct Entry {
    instance: Arc<Instance>,
    phases: Phases,
}

impl Chain {
    /// Sorts `instances` into run order.
    pub fn new(instances: Vec<Arc<Instance>>) -> Chain {
        let mut entries: Vec<Entry> = instances
            .into_iter()
            .map(|instance| Entry {
                phases: instance.plugin().phases(),
                instance,
            })
            .collect();
        entries.sort_by_key(|e| std::cmp::Reverse(e.instance.priority()));
        let phases = entries
            .iter()
            .fold(Phases::NONE, |all, e| all.union(e.phases));
        Chain {
            entries: entries.into_boxed_slice(),
            phases,
        }
    }

    /// Whether the chain has no plugin.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Whether some plugin of the chain takes part in `phase`.
    pub fn runs(&self, phase: Phase) -> bool {
        self.phases.contains(phase)
    }

    /// The instances in run order.
    pub fn instances(&self) -> impl Iterator<Item = &Instance> {
        self.entries.iter().map(|e| e.instance.as_ref())
    }

    /// Runs the request phase in order until a plugin responds.
    pub async fn request(
        &self,
        req: &mut RequestHeader,
        ctx: &mut Ctx,
    ) -> Result<Flow, PluginError> {
        if !self.phases.contains(Phase::Request) {
            ctx.set_ran(self.entries.len());
            return Ok(Flow::Continue);
        }
        for (index, entry) in self.entries.iter().enumerate() {
            ctx.set_ran(index + 1);
            if !entry.phases.contains(Phase::Request) {
                continue;
            }
            ctx.enter(index);
            let flow = entry
                .instance
                .plugin()
                .request(req, ctx)
                .await
                .map_err(|e| named(e, entry))?;
            if let Flow::Respond(response) = flow {
                return Ok(Flow::Respond(response));
            }
        }
        Ok(Flow::Continue)
    }

    /// Runs the request-body phase in order, for each chunk.
    pub fn request_body(
        &self,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut Ctx,
    ) -> Result<(), PluginError> {
        if !self.phases.contains(Phase::RequestBody) {
            return Ok(());
        }
        for (index, entry) in self.ran(ctx).iter().enumerate() {
            if entry.phases.contains(Phase::RequestBody) {
                ctx.enter(index);
                entry
                    .instance
                    .plugin()
                    .request_body(body, end_of_stream, ctx)
                    .map_err(|e| named(e, entry))?;
            }
        }
        Ok(())
    }

    /// Runs the upstream-request phase in order.
    pub fn upstream_request(
        &self,
        req: &mut RequestHeader,
        ctx: &mut Ctx,
    ) -> Result<(), PluginError> {
        if !self.phases.contains(Phase::UpstreamRequest) {
            return Ok(());
        }
        for (index, entry) in self.ran(ctx).iter().enumerate() {
            if entry.phases.contains(Phase::UpstreamRequest) {
                ctx.enter(index);
                entry
                    .instance
                    .plugin()
                    .upstream_request(req, ctx)
                    .map_err(|e| named(e, entry))?;
            }
        }
        Ok(())
    }

    /// Runs the response-header phase, in reverse order, for the plugins that ran.
    pub fn response_headers(
        &self,
        resp: &mut ResponseHeader,
        ctx: &mut Ctx,
    ) -> Result<(), PluginError> {
        ctx.status = resp.status.as_u16();
        if !self.phases.contains(Phase::ResponseHeaders) {
            return Ok(());
        }
        for (index, entry) in self.ran(ctx).iter().enumerate().rev() {
            if entry.phases.contains(Phase::ResponseHeaders) {
                ctx.enter(index);
                entry
                    .instance
                    .plugin()
                    .response_headers(resp, ctx)
                    .map_err(|e| named(e, entry))?;
            }
        }
        Ok(())
    }

    /// Runs the response-body phase, in reverse order, for the plugins that ran.
    pub fn response_body(
        &self,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut Ctx,
    ) -> Result<(), PluginError> {
        if !self.phases.contains(Phase::ResponseBody) {
            return Ok(());
        }
        for (index, entry) in self.ran(ctx).iter().enumerate().rev() {
            if entry.phases.contains(Phase::ResponseBody) {
                ctx.enter(index);
                entry
                    .instance
                    .plugin()
                    .response_body(body, end_of_stream, ctx)
                    .map_err(|e| named(e, entry))?;
            }
        }
        Ok(())
    }

    /// Runs the logging phase, in reverse order, for the plugins that ran.
    pub fn logging(&self, ctx: &mut Ctx) {
        if !self.phases.contains(Phase::Logging) {
            return;
        }
        for (index, entry) in self.ran(ctx).iter().enumerate().rev() {
            if entry.phases.contains(Phase::Logging) {
                ctx.enter(index);
                entry.instance.plugin().logging(ctx);
            }
        }
    }

    fn ran(&self, ctx: &Ctx) -> &[Entry] {
        &self.entries[..ctx.ran().min(self.entries.len())]
    }
}

impl std::fmt::Debug for Chain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.entries.iter().map(|e| e.instance.name()))
            .finish()
    }
}

fn named(mut error: PluginError, entry: &Entry) -> PluginError {
    error.plugin = entry.instance.name().to_string();
    error
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use async_trait::async_trait;
    use http::StatusCode;

    use super::*;
    use crate::{Plugin, Response};

    /// Records every call into a shared journal; optionally answers the request.
    struct Probe {
        name: &'static str,
        journal: Arc<Mutex<Vec<String>>>,
        respond_with: Option<StatusCode>,
        phases: Phases,
    }

    impl Probe {
        fn note(&self, what: &str) {
            self.journal
                .lock()
                .unwrap()
                .push(format!("{}:{what}", self.name));
        }
    }

    #[async_trait]
    impl Plugin for Probe {
        fn phases(&self) -> Phases {
            self.phases
        }
        async fn request(&self, _: &mut RequestHeader, ctx: &mut Ctx) -> Result<Flow, PluginError> {
            self.note("request");
            ctx.set_state(self.name);
            Ok(match self.respond_with {
                Some(status) => Flow::Respond(Response::new(status)),
                None => Flow::Continue,
            })
        }
        fn upstream_request(&self, _: &mut RequestHeader, _: &mut Ctx) -> Result<(), PluginError> {
            self.note("upstream");
            Ok(())
        }
        fn response_headers(
            &self,
            resp: &mut ResponseHeader,
            ctx: &mut Ctx,
        ) -> Result<(), PluginError> {
            assert_eq!(
                ctx.state::<&str>(),
                Some(&self.name),
                "own state is visible"
            );
            self.note(&format!("response {}", resp.status.as_u16()));
            Ok(())
        }
        fn logging(&self, _: &mut Ctx) {
            self.note("log");
        }
    }

    fn chain(
        journal: &Arc<Mutex<Vec<String>>>,
        specs: &[(&'static str, i32, Option<StatusCode>)],
    ) -> Chain {
        let all = Phases::of(&[
            Phase::Request,
            Phase::UpstreamRequest,
            Phase::ResponseHeaders,
            Phase::Logging,
        ]);
        Chain::new(
            specs
                .iter()
                .map(|&(name, priority, respond_with)| {
                    let probe = Probe {
                        name,
                        journal: journal.clone(),
                        respond_with,
                        phases: all,
                    };
                    Arc::new(Instance::new(name, "probe", priority, Arc::new(probe)))
                })
                .collect(),
        )
    }

    #[tokio::test]
    async fn runs_by_priority_and_reverses_for_responses() {
        let journal = Arc::new(Mutex::new(Vec::new()));
        let chain = chain(
            &journal,
            &[("low", 1, None), ("high", 10, None), ("mid", 5, None)],
        );
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        let mut ctx = Ctx::default();
        assert!(matches!(
            chain.request(&mut req, &mut ctx).await.unwrap(),
            Flow::Continue
        ));
        chain.upstream_request(&mut req, &mut ctx).unwrap();
        let mut resp = ResponseHeader::build(200, None).unwrap();
        chain.response_headers(&mut resp, &mut ctx).unwrap();
        chain.logging(&mut ctx);
        assert_eq!(
            *journal.lock().unwrap(),
            [
                "high:request",
                "mid:request",
                "low:request",
                "high:upstream",
                "mid:upstream",
                "low:upstream",
                "low:response 200",
                "mid:response 200",
                "high:response 200",
                "low:log",
                "mid:log",
                "high:log",
            ]
        );
    }

    #[tokio::test]
    async fn a_response_stops_the_request_phase_but_earlier_plugins_see_it() {
        let journal = Arc::new(Mutex::new(Vec::new()));
        let chain = chain(
            &journal,
            &[
                ("cors", 10, None),
                ("auth", 5, Some(StatusCode::UNAUTHORIZED)),
                ("late", 1, None),
            ],
        );
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        let mut ctx = Ctx::default();
        let Flow::Respond(response) = chain.request(&mut req, &mut ctx).await.unwrap() else {
            panic!("auth should answer");
        };
        let mut resp = ResponseHeader::build(response.status, None).unwrap();
        chain.response_headers(&mut resp, &mut ctx).unwrap();
        assert_eq!(ctx.status, 401);
        assert_eq!(
            *journal.lock().unwrap(),
            [
                "cors:request",
                "auth:request",
                "auth:response 401",
                "cors:response 401",
            ]
        );
    }

    #[tokio::test]
    async fn equal_priorities_keep_listed_order() {
        let journal = Arc::new(Mutex::new(Vec::new()));
        let chain = chain(&journal, &[("b", 0, None), ("a", 0, None), ("c", 0, None)]);
        let names: Vec<_> = chain.instances().map(|i| i.name().to_string()).collect();
        assert_eq!(names, ["b", "a", "c"]);
    }

    #[tokio::test]
    async fn errors_name_the_plugin() {
        struct Failing;
        #[async_trait]
        impl Plugin for Failing {
            fn phases(&self) -> Phases {
                Phases::of(&[Phase::Request])
            }
            async fn request(
                &self,
                _: &mut RequestHeader,
                _: &mut Ctx,
            ) -> Result<Flow, PluginError> {
                Err(PluginError::new("backend for keys is down"))
            }
        }
        let chain = Chain::new(vec![Arc::new(Instance::new(
            "keys",
            "failing",
            0,
            Arc::new(Failing),
        ))]);
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        let err = chain
            .request(&mut req, &mut Ctx::default())
            .await
            .unwrap_err();
        assert_eq!(err.to_string(), "plugin `keys`: backend for keys is down");
    }
}
