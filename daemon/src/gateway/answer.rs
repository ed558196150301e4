//! A non-streamed answer from an engine, read whole within a size bound: an engine (or something posing as one)
//! cannot make the daemon buffer without limit.
use crate::engine::Answer;
use bytes::Bytes;
use futures::StreamExt;

/// The largest non-streamed answer taken from an engine (embeddings of many long inputs are the big ones).
pub const MAX_UPSTREAM_BODY_BYTES: usize = 64 * 1024 * 1024;

/// The whole answer, or an error once it passes `limit` bytes (not read further).
pub async fn read_whole(answer: Answer, limit: usize) -> Result<Bytes, String> {
    let mut body = answer.body;
    let too_large = || format!("the answer is larger than the limit of {limit} bytes");
    let Some(first) = body.next().await.transpose()? else { return Ok(Bytes::new()) };
    let Some(second) = body.next().await.transpose()? else {
        return if first.len() > limit { Err(too_large()) } else { Ok(first) };
    };
    let mut whole = bytes::BytesMut::from(&first[..]);
    whole.extend_from_slice(&second);
    while let Some(chunk) = body.next().await.transpose()? {
        if whole.len() + chunk.len() > limit {
            return Err(too_large());
        }
        whole.extend_from_slice(&chunk);
    }
    if whole.len() > limit {
        return Err(too_large());
    }
    Ok(whole.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(chunks: &[&'static [u8]]) -> Answer {
        let chunks: Vec<Result<Bytes, String>> = chunks.iter().map(|c| Ok(Bytes::from_static(c))).collect();
        Answer { status: 200, body: futures::stream::iter(chunks).boxed() }
    }

    #[tokio::test]
    async fn an_answer_within_the_limit_is_read_whole() {
        assert_eq!(read_whole(answer(&[]), 8).await.as_deref(), Ok(&b""[..]));
        assert_eq!(read_whole(answer(&[b"abc"]), 8).await.as_deref(), Ok(&b"abc"[..]));
        assert_eq!(read_whole(answer(&[b"abc", b"de", b"fgh"]), 8).await.as_deref(), Ok(&b"abcdefgh"[..]));
    }

    #[tokio::test]
    async fn an_answer_past_the_limit_is_refused() {
        for chunks in [&[&b"123456789"[..]][..], &[b"1234", b"56789"], &[b"12", b"34", b"56", b"789"]] {
            let error = read_whole(answer(chunks), 8).await.expect_err("too large");
            assert!(error.contains("limit of 8 bytes"), "{error}");
        }
    }
}
