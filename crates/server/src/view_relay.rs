//! A view's change stream asked of a worker that does not run the view: relayed from the worker that
//! does. Each view runs on one worker (its claim), so with several workers behind one address the
//! dashboard's request may reach any of them. The worker running view `v` is the live one whose
//! heartbeat lists the job `view v`; the request is sent on to its heartbeat address (`[server]
//! advertise`, or where it listens) with the caller's `Authorization`, and its events are passed
//! through as they come (the owner has 5 s to answer; a relayed stream that brings nothing, not even the
//! owner's keep-alives, for 45 s ends). A relayed request is never relayed again. A
//! stream ends when its view stops running on the worker serving it, so its client reconnects to where
//! the view runs next.

use axum::http::{HeaderMap, HeaderValue, Request, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::AppState;

/// Marks a request one worker relays to another.
const RELAYED: &str = "x-shopstream-relayed";

/// Where view `name`'s stream comes from, for this worker.
pub(crate) enum Origin {
    /// This worker (it runs the view, or no other live worker does: it may claim it next).
    Here,
    /// The worker at this address runs it.
    Worker { id: String, http: String },
}

/// Which worker's stream of view `name` this request should get.
pub(crate) async fn origin(state: &AppState, name: &str, headers: &HeaderMap) -> Origin {
    let label = format!("view {name}");
    let runs_here = state.jobs.get().is_some_and(|j| j.list().contains(&label));
    let (Some(lake), false, false) = (state.lake.get(), runs_here, headers.contains_key(RELAYED))
    else {
        return Origin::Here;
    };
    let me = shopstream_engine::lease::worker_id();
    let (workers, _) = crate::workers::read(lake).await;
    match workers
        .into_iter()
        .find(|w| w.alive && w.id != me && w.jobs.contains(&label))
    {
        Some(w) => Origin::Worker {
            id: w.id,
            http: w.http,
        },
        None => Origin::Here,
    }
}

/// The stream of view `name` from worker `id` at `http`, passed through.
pub(crate) async fn relay(
    name: &str,
    id: &str,
    http: &str,
    auth: Option<&HeaderValue>,
) -> Response {
    match forward(name, http, auth).await {
        Ok(response) => response,
        Err(e) => (
            StatusCode::BAD_GATEWAY,
            format!("view `{name}` runs on worker {id} at {http}, which did not answer: {e}\n"),
        )
            .into_response(),
    }
}

/// How long the owner has to accept the connection and answer with its stream's headers.
const ANSWER_WITHIN: std::time::Duration = std::time::Duration::from_secs(5);

async fn forward(name: &str, http: &str, auth: Option<&HeaderValue>) -> Result<Response, String> {
    tokio::time::timeout(ANSWER_WITHIN, connect(name, http, auth, IDLE_AFTER))
        .await
        .map_err(|_| format!("no answer within {} s", ANSWER_WITHIN.as_secs()))?
}

async fn connect(
    name: &str,
    http: &str,
    auth: Option<&HeaderValue>,
    idle: std::time::Duration,
) -> Result<Response, String> {
    let stream = tokio::net::TcpStream::connect(http)
        .await
        .map_err(|e| e.to_string())?;
    let io = hyper_util::rt::TokioIo::new(stream);
    let (mut sender, connection) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    let mut request = Request::get(format!("/api/views/{name}/stream"))
        .header(header::HOST, http)
        .header(RELAYED, "1");
    if let Some(auth) = auth {
        request = request.header(header::AUTHORIZATION, auth);
    }
    let request = request
        .body(axum::body::Body::empty())
        .map_err(|e| e.to_string())?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| e.to_string())?;
    let (parts, body) = response.into_parts();
    Ok(Response::from_parts(parts, until_idle(body, idle)))
}

/// How long a relayed stream may pass nothing: three of the owner's 15 s keep-alives.
const IDLE_AFTER: std::time::Duration = std::time::Duration::from_secs(45);

/// `body` passed through until it ends, fails, or brings nothing for `idle` (the owner is gone or cut
/// off; the client reconnects).
fn until_idle(body: hyper::body::Incoming, idle: std::time::Duration) -> axum::body::Body {
    use futures::StreamExt;
    let frames = axum::body::Body::new(body).into_data_stream();
    let passed = futures::stream::unfold(frames, move |mut frames| async move {
        match tokio::time::timeout(idle, frames.next()).await {
            Ok(Some(Ok(bytes))) => Some((Ok::<_, axum::Error>(bytes), frames)),
            _ => None,
        }
    });
    axum::body::Body::from_stream(passed)
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// An owner that answers, sends one event, then goes silent with the connection open.
    async fn silent_owner() -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            let (mut conn, _) = listener.accept().await.unwrap();
            let mut request = [0u8; 1024];
            let _ = conn.read(&mut request).await.unwrap();
            let head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n";
            conn.write_all(head.as_bytes()).await.unwrap();
            conn.write_all(b"7\r\ndata: 1\r\n").await.unwrap();
            tokio::time::sleep(Duration::from_secs(60)).await;
            drop(conn);
        });
        addr
    }

    #[tokio::test]
    async fn a_relayed_stream_that_goes_silent_ends() {
        let http = silent_owner().await;
        let started = Instant::now();
        let response = super::connect("v", &http, None, Duration::from_millis(300))
            .await
            .unwrap();
        let body = axum::body::to_bytes(response.into_body(), 1024)
            .await
            .unwrap();
        assert_eq!(&body[..], b"data: 1");
        assert!(started.elapsed() < Duration::from_secs(30), "it ended");
    }
}
