//! The phases of a request and a compact set of them.

/// A point in the life of a request at which plugins run, in the order they occur.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Phase {
    /// The request header has arrived and a location matched; a plugin may answer it.
    Request,
    /// A chunk of the request body is about to be sent upstream.
    RequestBody,
    /// The request is about to be sent upstream.
    UpstreamRequest,
    /// The response header is about to be sent to the client.
    ResponseHeaders,
    /// A chunk of the response body is about to be sent to the client.
    ResponseBody,
    /// The request is finished (successfully or not).
    Logging,
}

impl Phase {
    const fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

/// A set of [`Phase`]s, used by a plugin to say which phases it takes part in so that the chain
/// skips it everywhere else.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Phases(u8);

impl Phases {
    /// No phase at all.
    pub const NONE: Phases = Phases(0);

    /// The set of the given phases.
    pub const fn of(phases: &[Phase]) -> Phases {
        let mut bits = 0;
        let mut i = 0;
        while i < phases.len() {
            bits |= phases[i].bit();
            i += 1;
        }
        Phases(bits)
    }

    /// Whether `phase` is in the set.
    pub const fn contains(self, phase: Phase) -> bool {
        self.0 & phase.bit() != 0
    }

    /// The union of both sets.
    pub const fn union(self, other: Phases) -> Phases {
        Phases(self.0 | other.0)
    }

    /// Whether the set is empty.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sets_hold_exactly_their_phases() {
        let set = Phases::of(&[Phase::Request, Phase::Logging]);
        assert!(set.contains(Phase::Request));
        assert!(set.contains(Phase::Logging));
        assert!(!set.contains(Phase::ResponseBody));
        assert!(Phases::NONE.is_empty());
        let all = set.union(Phases::of(&[Phase::ResponseBody]));
        assert!(all.contains(Phase::ResponseBody) && all.contains(Phase::Request));
    }
}
