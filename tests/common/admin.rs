//! A client of the admin API for the tests: signs in (keeping the session cookie and sending the
//! API's own `Origin` on changes, as a browser would) or uses a bearer token.

use super::Pingap;

/// The users' password in the tests' configurations.
pub const PASSWORD: &str = "correct horse battery staple";

/// `[admin]` on an ephemeral loopback port with user `alice` (password [`PASSWORD`]) and the
/// extra `settings` lines.
pub fn section(settings: &str) -> String {
    let hash = pingap::admin::auth::hash_password(PASSWORD).unwrap();
    format!(
        "[admin]\nenabled = true\naddr = \"127.0.0.1:0\"\nusers = [\"alice:{hash}\"]\n{settings}\n"
    )
}

/// The admin API's base URL, from the line that announces it.
pub fn url(pingap: &Pingap) -> String {
    pingap.announced_url("admin API on ")
}

/// An answer: status, headers and the body as JSON (`Null` when it is not JSON).
pub struct Answer {
    /// The status.
    pub status: u16,
    /// The headers.
    pub headers: reqwest::header::HeaderMap,
    /// The body.
    pub json: serde_json::Value,
    /// The body as text.
    pub text: String,
}

impl Answer {
    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// A signed-in client (or an anonymous one).
#[derive(Clone)]
pub struct Admin {
    /// The base URL.
    pub base: String,
    cookie: Option<String>,
    token: Option<String>,
    origin: Option<String>,
}

impl Admin {
    /// A client with no credentials.
    pub fn anonymous(base: &str) -> Admin {
        Admin {
            base: base.to_string(),
            cookie: None,
            token: None,
            origin: Some(base.to_string()),
        }
    }

    /// A client sending `Authorization: Bearer token`.
    pub fn with_token(base: &str, token: &str) -> Admin {
        Admin {
            token: Some(token.to_string()),
            origin: None,
            ..Admin::anonymous(base)
        }
    }

    /// Signs in as `user`; panics unless it works.
    pub async fn login(base: &str, user: &str, password: &str) -> Admin {
        let (answer, admin) = Admin::try_login(base, user, password).await;
        assert_eq!(answer.status, 200, "login: {}", answer.text);
        admin
    }

    /// Tries to sign in; the answer, and a client with the session cookie when it was set.
    pub async fn try_login(base: &str, user: &str, password: &str) -> (Answer, Admin) {
        let anonymous = Admin::anonymous(base);
        let answer = anonymous
            .send(
                "POST",
                "/api/login",
                Some(serde_json::json!({"user": user, "password": password})),
                &[],
            )
            .await;
        let cookie = answer
            .header("set-cookie")
            .and_then(|c| c.split(';').next())
            .map(str::to_string);
        (
            answer,
            Admin {
                cookie,
                ..anonymous
            },
        )
    }

    /// The same client sending `origin` (`None`: no `Origin` header) on changes.
    pub fn sending_origin(&self, origin: Option<&str>) -> Admin {
        Admin {
            origin: origin.map(str::to_string),
            ..self.clone()
        }
    }

    /// Sends a request with an optional JSON body and extra headers.
    pub async fn send(
        &self,
        method: &str,
        path: &str,
        body: Option<serde_json::Value>,
        headers: &[(&str, &str)],
    ) -> Answer {
        let client = super::client();
        let mut request = client.request(method.parse().unwrap(), format!("{}{path}", self.base));
        if let Some(cookie) = &self.cookie {
            request = request.header("cookie", cookie);
        }
        if let Some(token) = &self.token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        if method != "GET"
            && let Some(origin) = &self.origin
        {
            request = request.header("origin", origin);
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body.to_string());
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await.unwrap();
        Answer {
            status,
            headers,
            json: serde_json::from_str(&text).unwrap_or(serde_json::Value::Null),
            text,
        }
    }

    /// The bearer token, for a token client.
    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    /// GET.
    pub async fn get(&self, path: &str) -> Answer {
        self.send("GET", path, None, &[]).await
    }

    /// PUT a JSON body.
    pub async fn put(
        &self,
        path: &str,
        body: serde_json::Value,
        headers: &[(&str, &str)],
    ) -> Answer {
        self.send("PUT", path, Some(body), headers).await
    }
}
