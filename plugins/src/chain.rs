//! A location's plugins in run order, and the runner for each phase.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use pingora_http::{RequestHeader, ResponseHeader};

use crate::{Flow, Instance, Phase, Phases, Plugin, PluginCtx, PluginError};

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
        ctx: &mut PluginCtx,
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
                .map_err(|e| e.named(entry))?;
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
        ctx: &mut PluginCtx,
    ) -> Result<(), PluginError> {
        self.run(Phase::RequestBody, ctx, |plugin, ctx| {
            plugin.request_body(body, end_of_stream, ctx)
        })
    }

    /// Runs the upstream-request phase in order.
    pub fn upstream_request(
        &self,
        req: &mut RequestHeader,
        ctx: &mut PluginCtx,
    ) -> Result<(), PluginError> {
        self.run(Phase::UpstreamRequest, ctx, |plugin, ctx| {
            plugin.upstream_request(req, ctx)
        })
    }

    /// Runs the response-header phase, in reverse order, for the plugins that ran.
    pub fn response_headers(
        &self,
        resp: &mut ResponseHeader,
        ctx: &mut PluginCtx,
    ) -> Result<(), PluginError> {
        ctx.status = resp.status.as_u16();
        self.run(Phase::ResponseHeaders, ctx, |plugin, ctx| {
            plugin.response_headers(resp, ctx)
        })
    }

    /// Runs the response-body phase, in reverse order, for the plugins that ran.
    pub fn response_body(
        &self,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut PluginCtx,
    ) -> Result<(), PluginError> {
        self.run(Phase::ResponseBody, ctx, |plugin, ctx| {
            plugin.response_body(body, end_of_stream, ctx)
        })
    }

    /// Runs the logging phase, in reverse order, for the plugins that ran.
    pub fn logging(&self, ctx: &mut PluginCtx) {
        let Ok(()) = self.run(Phase::Logging, ctx, |plugin, ctx| {
            plugin.logging(ctx);
            Ok::<(), Infallible>(())
        });
    }

    /// Runs `call` for each plugin that takes part in `phase` among those that ran their request
    /// phase (or were skipped for it): in order for the phases on the way in, in reverse order
    /// for the response phases. Stops at the first error, which names its plugin. Nothing is
    /// allocated.
    ///
    /// The request phase itself is not run here: it decides which plugins ran.
    fn run<E: PhaseError>(
        &self,
        phase: Phase,
        ctx: &mut PluginCtx,
        mut call: impl FnMut(&dyn Plugin, &mut PluginCtx) -> Result<(), E>,
    ) -> Result<(), E> {
        if !self.phases.contains(phase) {
            return Ok(());
        }
        let ran = self.ran(ctx);
        let reverse = matches!(
            phase,
            Phase::ResponseHeaders | Phase::ResponseBody | Phase::Logging
        );
        for step in 0..ran.len() {
            let index = if reverse { ran.len() - 1 - step } else { step };
            let entry = &ran[index];
            if entry.phases.contains(phase) {
                ctx.enter(index);
                call(entry.instance.plugin(), ctx).map_err(|e| e.named(entry))?;
            }
        }
        Ok(())
    }

    /// The plugins that ran their request phase (or were skipped for it), in run order.
    fn ran(&self, ctx: &PluginCtx) -> &[Entry] {
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

/// The error of a phase, which the chain tags with the plugin that failed.
trait PhaseError {
    /// The error, naming the plugin of `entry`.
    fn named(self, entry: &Entry) -> Self;
}

impl PhaseError for PluginError {
    fn named(mut self, entry: &Entry) -> Self {
        self.plugin = entry.instance.name().to_string();
        self
    }
}

/// The logging phase cannot fail.
impl PhaseError for Infallible {
    fn named(self, _: &Entry) -> Self {
        match self {}
    }
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
        async fn request(
            &self,
            _: &mut RequestHeader,
            ctx: &mut PluginCtx,
        ) -> Result<Flow, PluginError> {
            self.note("request");
            ctx.set_state(self.name);
            Ok(match self.respond_with {
                Some(status) => Flow::Respond(Response::new(status)),
                None => Flow::Continue,
            })
        }
        fn request_body(
            &self,
            _: &mut Option<Bytes>,
            end_of_stream: bool,
            _: &mut PluginCtx,
        ) -> Result<(), PluginError> {
            self.note(&format!("request body {end_of_stream}"));
            Ok(())
        }
        fn upstream_request(
            &self,
            _: &mut RequestHeader,
            _: &mut PluginCtx,
        ) -> Result<(), PluginError> {
            self.note("upstream");
            Ok(())
        }
        fn response_headers(
            &self,
            resp: &mut ResponseHeader,
            ctx: &mut PluginCtx,
        ) -> Result<(), PluginError> {
            assert_eq!(
                ctx.state::<&str>(),
                Some(&self.name),
                "own state is visible"
            );
            self.note(&format!("response {}", resp.status.as_u16()));
            Ok(())
        }
        fn response_body(
            &self,
            _: &mut Option<Bytes>,
            end_of_stream: bool,
            _: &mut PluginCtx,
        ) -> Result<(), PluginError> {
            self.note(&format!("response body {end_of_stream}"));
            Ok(())
        }
        fn logging(&self, _: &mut PluginCtx) {
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
        let mut ctx = PluginCtx::default();
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
        let mut ctx = PluginCtx::default();
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
    async fn body_phases_follow_the_request_order_and_only_plugins_that_ran() {
        let journal = Arc::new(Mutex::new(Vec::new()));
        let all = Phases::of(&[Phase::Request, Phase::RequestBody, Phase::ResponseBody]);
        let body_only = Phases::of(&[Phase::RequestBody, Phase::ResponseBody]);
        let chain = Chain::new(
            [("low", 1, all), ("high", 10, all), ("quiet", 5, body_only)]
                .into_iter()
                .map(|(name, priority, phases)| {
                    let probe = Probe {
                        name,
                        journal: journal.clone(),
                        respond_with: None,
                        phases,
                    };
                    Arc::new(Instance::new(name, "probe", priority, Arc::new(probe)))
                })
                .collect(),
        );
        assert!(chain.runs(Phase::ResponseBody) && !chain.runs(Phase::Logging));
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        let mut ctx = PluginCtx::default();
        chain.request(&mut req, &mut ctx).await.unwrap();
        let mut body = None;
        chain.request_body(&mut body, true, &mut ctx).unwrap();
        chain.response_body(&mut body, false, &mut ctx).unwrap();
        chain.logging(&mut ctx);
        assert_eq!(
            *journal.lock().unwrap(),
            [
                "high:request",
                "low:request",
                "high:request body true",
                "quiet:request body true",
                "low:request body true",
                "low:response body false",
                "quiet:response body false",
                "high:response body false",
            ]
        );

        journal.lock().unwrap().clear();
        let mut fresh = PluginCtx::default();
        chain.response_body(&mut body, true, &mut fresh).unwrap();
        assert!(
            journal.lock().unwrap().is_empty(),
            "nothing ran its request phase yet"
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
                _: &mut PluginCtx,
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
            .request(&mut req, &mut PluginCtx::default())
            .await
            .unwrap_err();
        assert_eq!(err.to_string(), "plugin `keys`: backend for keys is down");
    }
}
