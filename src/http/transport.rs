//! What the W&B client and the identity-provider sources share below their retry loops:
//! reading a reply body within a size limit, and naming a transport error's real cause.

/// Why a reply body could not be read.
#[derive(Debug)]
pub enum BodyError {
    /// The connection failed or timed out while the body was arriving.
    Transport(reqwest::Error),
    /// The body grew past the limit; the rest was not read.
    TooLarge { limit: usize },
}

impl BodyError {
    /// The text for a "malformed reply" error.
    pub fn too_large_detail(limit: usize) -> String {
        format!("response body larger than {} MiB", limit / (1024 * 1024))
    }
}

/// Reads `resp`'s body, refusing one larger than `limit` bytes: a server must not be able
/// to make idsync buffer without bound.
pub async fn read_body(resp: &mut reqwest::Response, limit: usize) -> Result<Vec<u8>, BodyError> {
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(BodyError::Transport)? {
        if body.len() + chunk.len() > limit {
            return Err(BodyError::TooLarge { limit });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// The innermost cause of a transport error ("Connection refused (os error 111)") is
/// what a human can act on; reqwest's own top-level text only says "error sending request".
pub fn root_cause(e: &reqwest::Error) -> String {
    let mut cause: &dyn std::error::Error = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

/// What kind of transport failure a reqwest error is, with its root cause: each client
/// turns it into its own typed error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    Timeout,
    /// The request could not be built (a bad URL or header): a config problem.
    Build(String),
    /// Connecting, TLS, or the connection dropping.
    Connection(String),
}

/// Whether the request may have reached the server before `e`: not when building it or
/// connecting (TCP or TLS) failed; otherwise (a timeout, a connection dropped mid-request)
/// the server may have received it, and done the work.
pub fn may_have_been_sent(e: &reqwest::Error) -> bool {
    !(e.is_builder() || e.is_connect())
}

pub fn classify(e: &reqwest::Error) -> Failure {
    if e.is_timeout() {
        Failure::Timeout
    } else if e.is_builder() {
        Failure::Build(root_cause(e))
    } else {
        Failure::Connection(root_cause(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(body: &str) -> reqwest::Response {
        reqwest::Response::from(http::Response::new(body.to_string()))
    }

    #[tokio::test]
    async fn bodies_within_the_limit_are_read_whole_and_larger_ones_refused() {
        assert_eq!(read_body(&mut reply("hello"), 5).await.unwrap(), b"hello");
        assert_eq!(read_body(&mut reply(""), 0).await.unwrap(), b"");
        assert!(matches!(
            read_body(&mut reply("hello!"), 5).await,
            Err(BodyError::TooLarge { limit: 5 })
        ));
        assert_eq!(BodyError::too_large_detail(64 * 1024 * 1024), "response body larger than 64 MiB");
    }
}
