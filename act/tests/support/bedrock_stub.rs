//! A Bedrock runtime stub for tests: a small HTTP/1.1 server on 127.0.0.1 that speaks the
//! Converse wire protocol (`POST /model/{modelId}/converse`, JSON in, JSON out; errors as
//! `x-amzn-ErrorType` + `{"message": ...}` with the service's status codes), answering from a
//! script, so the real aws-sdk-bedrockruntime client is exercised end to end.
//! API: <https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_Converse.html>.

#![allow(dead_code)]

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// One request the stub received.
#[derive(Debug, Clone)]
pub struct StubRequest {
    /// The model id from the path, percent-decoded.
    pub model_id: String,
    /// The path as sent.
    pub path: String,
    /// The JSON body.
    pub body: serde_json::Value,
}

impl StubRequest {
    /// The text of the first user message.
    pub fn user_text(&self) -> String {
        self.body["messages"][0]["content"][0]["text"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }
    /// The system prompt text.
    pub fn system_text(&self) -> String {
        self.body["system"][0]["text"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }
}

/// What the stub answers.
#[derive(Debug, Clone)]
pub enum Reply {
    /// A model answer: the text and the stop reason (`end_turn`, `max_tokens`, ...).
    Text(String, &'static str),
    /// An error: HTTP status, error code, message.
    Error(u16, &'static str, String),
}

impl Reply {
    pub fn answer(text: impl Into<String>) -> Reply {
        Reply::Text(text.into(), "end_turn")
    }
    pub fn throttling() -> Reply {
        Reply::Error(
            429,
            "ThrottlingException",
            "Too many requests, please wait before trying again.".into(),
        )
    }
    pub fn daily_quota() -> Reply {
        Reply::Error(
            400,
            "ServiceQuotaExceededException",
            "Your request exceeded the daily token quota for this model.".into(),
        )
    }
    pub fn on_demand_not_supported(model: &str) -> Reply {
        Reply::Error(
            400,
            "ValidationException",
            format!(
                "Invocation of model ID {model} with on-demand throughput isn\u{2019}t supported. Retry your request with the ID or ARN of an inference profile that contains this model."
            ),
        )
    }
    pub fn model_not_enabled() -> Reply {
        Reply::Error(
            403,
            "AccessDeniedException",
            "You don't have access to the model with the specified model ID.".into(),
        )
    }
    pub fn invalid_model() -> Reply {
        Reply::Error(
            400,
            "ValidationException",
            "The provided model identifier is invalid.".into(),
        )
    }
}

type Responder = dyn Fn(&StubRequest) -> Reply + Send + Sync;

/// The running stub. Stops when dropped.
pub struct BedrockStub {
    url: String,
    requests: Arc<Mutex<Vec<StubRequest>>>,
    script: Arc<Mutex<VecDeque<Reply>>>,
    stop: Arc<AtomicBool>,
    port: u16,
    thread: Option<JoinHandle<()>>,
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && let Some(Ok(v)) = s.get(i + 1..i + 3).map(|h| u8::from_str_radix(h, 16))
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn handle(
    stream: TcpStream,
    requests: &Mutex<Vec<StubRequest>>,
    script: &Mutex<VecDeque<Reply>>,
    fallback: &Responder,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
    let mut len = 0usize;
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 || h == "\r\n" {
            break;
        }
        if let Some((k, v)) = h.split_once(':')
            && k.eq_ignore_ascii_case("content-length")
        {
            len = v.trim().parse().unwrap_or(0);
        }
    }
    let mut body = vec![0u8; len];
    reader.read_exact(&mut body)?;
    let model_id = path
        .strip_prefix("/model/")
        .and_then(|p| p.strip_suffix("/converse"))
        .map(percent_decode)
        .unwrap_or_default();
    let req = StubRequest {
        model_id,
        path: path.clone(),
        body: serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
    };
    let reply = if !path.ends_with("/converse") {
        Reply::Error(404, "UnknownOperationException", format!("no route {path}"))
    } else {
        let scripted = script.lock().unwrap().pop_front();
        scripted.unwrap_or_else(|| fallback(&req))
    };
    requests.lock().unwrap().push(req);
    let (status, headers, body) = match reply {
        Reply::Text(text, stop) => {
            let out = (text.len() / 4).max(1);
            let v = serde_json::json!({
                "output": {"message": {"role": "assistant", "content": [{"text": text}]}},
                "stopReason": stop,
                "usage": {"inputTokens": 100, "outputTokens": out, "totalTokens": 100 + out},
                "metrics": {"latencyMs": 3},
            });
            (200, String::new(), v.to_string())
        }
        Reply::Error(status, code, message) => (
            status,
            format!(
                "x-amzn-ErrorType: {code}:http://internal.amazon.com/coral/com.amazon.bedrock/\r\n"
            ),
            serde_json::json!({ "message": message }).to_string(),
        ),
    };
    let mut w = stream;
    write!(
        w,
        "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\nx-amzn-requestid: stub\r\n{headers}content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )?;
    w.flush()
}

impl BedrockStub {
    /// Starts a stub answering scripted replies in order, then `fallback` for every further
    /// request.
    pub fn start(
        script: Vec<Reply>,
        fallback: impl Fn(&StubRequest) -> Reply + Send + Sync + 'static,
    ) -> BedrockStub {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let script = Arc::new(Mutex::new(script.into_iter().collect::<VecDeque<_>>()));
        let stop = Arc::new(AtomicBool::new(false));
        let fallback: Arc<Responder> = Arc::new(fallback);
        let thread = {
            let (requests, script, stop) = (requests.clone(), script.clone(), stop.clone());
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(stream) = stream else { continue };
                    let (requests, script, fallback) =
                        (requests.clone(), script.clone(), fallback.clone());
                    std::thread::spawn(move || {
                        let _ = handle(stream, &requests, &script, fallback.as_ref());
                    });
                }
            })
        };
        BedrockStub {
            url: format!("http://127.0.0.1:{port}"),
            requests,
            script,
            stop,
            port,
            thread: Some(thread),
        }
    }

    /// A stub giving `reply` to every request.
    pub fn always(reply: Reply) -> BedrockStub {
        BedrockStub::start(vec![], move |_| reply.clone())
    }

    /// The endpoint URL (`http://127.0.0.1:PORT`).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<StubRequest> {
        self.requests.lock().unwrap().clone()
    }

    /// Appends scripted replies.
    pub fn push(&self, replies: Vec<Reply>) {
        self.script.lock().unwrap().extend(replies);
    }
}

impl Drop for BedrockStub {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
