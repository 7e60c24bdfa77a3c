//! The HTTP client every scenario uses. Each answer is classified once: a 2xx is accepted,
//! a 4xx is a refusal (counted, never a failure), a 503 with `Retry-After` is "not yet"
//! (read-your-writes), and any other 5xx or a transport error is a failure, recorded here so
//! that the run can fail at the end (CI's smoke test).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::Method;
use serde_json::Value;

use crate::bail;
use crate::error::Result;

/// How an answer counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Accepted,
    Refused,
    NotYet,
    Failed,
    /// Nothing was sent (e.g. no appointment left to reschedule).
    Skipped,
}

/// One answer: status, classification, `position` and `id` of a command answer, the body.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub outcome: Outcome,
    pub body: Value,
}

impl Reply {
    pub fn id(&self) -> Option<uuid::Uuid> {
        self.body["id"].as_str().and_then(|s| s.parse().ok())
    }

    pub fn position(&self) -> i64 {
        self.body["position"].as_i64().unwrap_or(0)
    }

    /// The body, or an error naming the request when it was not accepted.
    pub fn accepted(self, what: &str) -> Result<Value> {
        if self.outcome != Outcome::Accepted {
            bail!("{what}: HTTP {} {}", self.status, self.body);
        }
        Ok(self.body)
    }
}

/// 5xx answers and transport errors seen during the run (the first few kept as examples).
#[derive(Default)]
pub struct Failures {
    examples: Mutex<Vec<String>>,
    /// How many of each status (0: no answer).
    by_status: Mutex<std::collections::BTreeMap<u16, u64>>,
}

impl Failures {
    pub fn record(&self, status: u16, what: String) {
        *self
            .by_status
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(status)
            .or_default() += 1;
        let mut examples = self.examples.lock().unwrap_or_else(|e| e.into_inner());
        if examples.len() < 10 {
            examples.push(what);
        }
    }

    pub fn count(&self) -> u64 {
        self.by_status
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .sum()
    }

    /// Failures by HTTP status; 0 counts the requests that got no answer.
    pub fn by_status(&self) -> std::collections::BTreeMap<u16, u64> {
        self.by_status
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn examples(&self) -> Vec<String> {
        self.examples
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// A command the service accepted: what `clinic-bench --faults` later looks for in the store.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Accepted {
    pub method: String,
    pub path: String,
    pub status: u16,
    /// The record the command acted on (`id` of the answer).
    pub id: uuid::Uuid,
    /// The record's version after the command: the sequence of its last event.
    pub version: i64,
    /// The global position of that event.
    pub position: i64,
}

/// Every command answered 2xx, in the order the answers arrived.
#[derive(Default)]
pub struct Journal {
    accepted: Mutex<Vec<Accepted>>,
}

impl Journal {
    fn record(&self, method: &Method, path: &str, status: u16, body: &Value) {
        let (Some(id), Some(version), Some(position)) = (
            body["id"].as_str().and_then(|s| s.parse().ok()),
            body["version"].as_i64(),
            body["position"].as_i64(),
        ) else {
            return;
        };
        let accepted = Accepted {
            method: method.to_string(),
            path: path.to_owned(),
            status,
            id,
            version,
            position,
        };
        self.accepted
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(accepted);
    }

    pub fn all(&self) -> Vec<Accepted> {
        self.accepted
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

#[derive(Clone)]
pub struct Api {
    http: reqwest::Client,
    base: String,
    pub failures: Arc<Failures>,
    /// When set, every accepted command (not a `GET`) is journaled.
    pub journal: Option<Arc<Journal>>,
}

impl Api {
    pub fn new(base: &str) -> Result<Api> {
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(256)
            .timeout(Duration::from_secs(120))
            .build()?;
        Ok(Api {
            http,
            base: base.trim_end_matches('/').to_owned(),
            failures: Arc::default(),
            journal: None,
        })
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// Sends one request and classifies the answer.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
        headers: &[(&str, String)],
    ) -> Reply {
        self.exchange(method, path, token, body, headers, |_| true)
            .await
    }

    /// [`Api::send`], parsing the answer's body only when `parse(status)` says so (the
    /// body is read to its end either way).
    async fn exchange(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
        headers: &[(&str, String)],
        parse: impl Fn(u16) -> bool,
    ) -> Reply {
        let mut request = self.http.request(method.clone(), self.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        let answer = match request.send().await {
            Ok(answer) => answer,
            Err(e) => return self.transport_failure(&method, path, e),
        };
        let status = answer.status().as_u16();
        let retry_after = answer.headers().contains_key("retry-after");
        let bytes = match answer.bytes().await {
            Ok(bytes) => bytes,
            Err(e) => return self.transport_failure(&method, path, e),
        };
        let body = if parse(status) {
            serde_json::from_slice(&bytes).unwrap_or(Value::Null)
        } else {
            Value::Null
        };
        let outcome = match status {
            200..=299 => Outcome::Accepted,
            503 if retry_after => Outcome::NotYet,
            500..=599 => {
                self.failures
                    .record(status, format!("{method} {path}: HTTP {status} {body}"));
                Outcome::Failed
            }
            _ => Outcome::Refused,
        };
        if let (Outcome::Accepted, Some(journal)) = (outcome, &self.journal) {
            if method != Method::GET {
                journal.record(&method, path, status, &body);
            }
        }
        Reply {
            status,
            outcome,
            body,
        }
    }

    fn transport_failure(&self, method: &Method, path: &str, e: reqwest::Error) -> Reply {
        self.failures.record(0, format!("{method} {path}: {e}"));
        Reply {
            status: 0,
            outcome: Outcome::Failed,
            body: Value::Null,
        }
    }

    pub async fn get(&self, path: &str, token: &str) -> Reply {
        self.send(Method::GET, path, Some(token), None, &[]).await
    }

    /// A `GET` whose answer is only counted, as the read loads need: the body is read to its
    /// end, as any client reads it, but parsed only when it is a failure to record. (Parsing
    /// every answer into a `Value` spent the benchmark's CPU, on the 2 cores it shares with
    /// the server: about 1 ms for a 14-day availability of an all-day doctor.)
    pub async fn get_outcome(&self, path: &str, token: &str) -> Outcome {
        self.exchange(Method::GET, path, Some(token), None, &[], |status| {
            (500..=599).contains(&status)
        })
        .await
        .outcome
    }

    pub async fn post(&self, path: &str, token: &str, body: Value) -> Reply {
        self.send(Method::POST, path, Some(token), Some(&body), &[])
            .await
    }

    pub async fn put(&self, path: &str, token: &str, body: Value) -> Reply {
        self.send(Method::PUT, path, Some(token), Some(&body), &[])
            .await
    }

    /// Logs in and returns the access token.
    pub async fn login(&self, email: &str, password: &str) -> Result<String> {
        let body = serde_json::json!({"email": email, "password": password});
        let reply = self
            .send(Method::POST, "/v1/auth/login", None, Some(&body), &[])
            .await
            .accepted(&format!("log in as {email}"))?;
        match reply["access_token"].as_str() {
            Some(token) => Ok(token.to_owned()),
            None => bail!("log in as {email}: no access_token in {reply}"),
        }
    }
}
