//! Graph-shaped errors. Handlers return them without knowing the request ids; the front
//! middleware renders the body with the ids it issued for the request.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

#[derive(Clone, Debug)]
pub struct GraphError {
    pub status: StatusCode,
    pub code: String,
    pub message: String,
    pub headers: Vec<(&'static str, String)>,
    /// Extra `innerError` members (Graph's 429 body carries code/message/status there).
    pub inner_extra: Vec<(&'static str, String)>,
    /// A refused write that must not use up the app's write limit.
    pub uncounted: bool,
}

impl GraphError {
    pub fn new(status: StatusCode, code: &str, message: impl Into<String>) -> GraphError {
        GraphError {
            status,
            code: code.to_string(),
            message: message.into(),
            headers: Vec::new(),
            inner_extra: Vec::new(),
            uncounted: false,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> GraphError {
        GraphError::new(StatusCode::BAD_REQUEST, "Request_BadRequest", message)
    }

    /// The plain `BadRequest` code the invitation manager and OData layer use.
    pub fn invalid(message: impl Into<String>) -> GraphError {
        GraphError::new(StatusCode::BAD_REQUEST, "BadRequest", message)
    }

    pub fn not_found(what: &str) -> GraphError {
        GraphError::new(
            StatusCode::NOT_FOUND,
            "Request_ResourceNotFound",
            format!(
                "Resource '{what}' does not exist or one of its queried reference-property objects are not present."
            ),
        )
    }

    pub fn denied(message: impl Into<String>) -> GraphError {
        GraphError::new(
            StatusCode::FORBIDDEN,
            "Authorization_RequestDenied",
            message,
        )
    }

    pub fn unauthenticated(message: impl Into<String>) -> GraphError {
        GraphError::new(
            StatusCode::UNAUTHORIZED,
            "InvalidAuthenticationToken",
            message,
        )
        .header("www-authenticate", "Bearer realm=\"\", authorization_uri=\"https://login.microsoftonline.com/common/oauth2/authorize\", client_id=\"00000003-0000-0000-c000-000000000000\"".to_string())
    }

    pub fn too_many_requests(retry_after: Option<String>) -> GraphError {
        let mut e = GraphError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "TooManyRequests",
            "Please retry again later.",
        );
        e.inner_extra = vec![
            ("code", "429".into()),
            ("message", "Please retry after".into()),
            ("status", "429".into()),
        ];
        if let Some(r) = retry_after {
            e = e.header("retry-after", r);
        }
        e
    }

    pub fn header(mut self, name: &'static str, value: String) -> GraphError {
        self.headers.push((name, value));
        self
    }

    pub fn not_counted(mut self) -> GraphError {
        self.uncounted = true;
        self
    }
}

impl IntoResponse for GraphError {
    fn into_response(self) -> Response {
        let mut resp = self.status.into_response();
        resp.extensions_mut().insert(self);
        resp
    }
}

pub type GraphResult<T> = Result<T, GraphError>;
