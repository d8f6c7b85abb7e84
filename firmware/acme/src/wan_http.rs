//! What the appliance's port 80 answers a peer outside the LAN: the key authorization of the
//! pending HTTP-01 challenge for exactly `GET /.well-known/acme-challenge/<token>`, and 403 to
//! everything else (the status pages, other paths, a token no longer pending, any other
//! method). A pure function, so the firmware's listener only moves bytes. Calls `client`'s
//! [`PendingChallenge::http01_answer`].

use crate::client::PendingChallenge;

/// The answer to a WAN peer's request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WanAnswer<'a> {
    /// 200 with this body (the key authorization, `text/plain`).
    KeyAuthorization(&'a str),
    /// 403.
    Forbidden,
}

/// The answer to a WAN peer's `GET` (`get` false for any other method) of `path` (the request
/// target as sent, query included) while `pending` is the challenge in progress.
pub fn route<'a>(get: bool, path: &str, pending: Option<&'a PendingChallenge>) -> WanAnswer<'a> {
    match pending.filter(|_| get).and_then(|pending| pending.http01_answer(path)) {
        Some(answer) => WanAnswer::KeyAuthorization(answer),
        None => WanAnswer::Forbidden,
    }
}

#[cfg(test)]
mod tests {
    use alloc::string::ToString;

    use super::*;
    use crate::objects::ChallengeKind;

    fn pending(kind: ChallengeKind) -> PendingChallenge {
        PendingChallenge {
            kind,
            token: "evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA".to_string(),
            key_authorization: "evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA.nP1qzpXGymHBrUEepNY9HCsQk7K8KhOypzEt62jcerQ".to_string(),
        }
    }

    const PATH: &str = "/.well-known/acme-challenge/evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA";

    #[test]
    fn the_pending_token_gets_its_key_authorization() {
        let challenge = pending(ChallengeKind::Http01);
        assert_eq!(route(true, PATH, Some(&challenge)), WanAnswer::KeyAuthorization(&challenge.key_authorization));
    }

    #[test]
    fn everything_else_is_forbidden() {
        let challenge = pending(ChallengeKind::Http01);
        let stale = "/.well-known/acme-challenge/LoqXcYV8q5ONbJQxbmR7SCTNo3tiAXDfowyjxAjEuX0";
        let attacks = [
            "/",
            "/status.json",
            "/health",
            stale,
            "/.well-known/acme-challenge/",
            "/.well-known/acme-challenge",
            "/.well-known/ACME-CHALLENGE/evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA",
            "/.well-known/acme-challenge/evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA/",
            "/.well-known/acme-challenge/evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA?x=1",
            "/.well-known/acme-challenge/evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-o",
            "/.well-known/acme-challenge/evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oAA",
            "/.well-known/acme-challenge/../../status.json",
            "//.well-known/acme-challenge/evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA",
            "/.well-known/acme-challenge/evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA%00",
            "http://mx.example.org/.well-known/acme-challenge/evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA",
        ];
        for path in attacks {
            assert_eq!(route(true, path, Some(&challenge)), WanAnswer::Forbidden, "{path}");
        }
        // No challenge pending (none started, or the attempt ended): the token is stale.
        assert_eq!(route(true, PATH, None), WanAnswer::Forbidden);
        // Not a GET.
        assert_eq!(route(false, PATH, Some(&challenge)), WanAnswer::Forbidden);
        // A TLS-ALPN-01 challenge is not answered on port 80.
        assert_eq!(route(true, PATH, Some(&pending(ChallengeKind::TlsAlpn01))), WanAnswer::Forbidden);
    }
}
