//! The plain-text rejections of the contract (SPEC §2): status, exact body text and headers.
//!
//! Every rejection carries `Content-Type: text/plain; charset=utf-8` and a body built from a static
//! string, so answering one never formats or copies text.
//!
//! Each rejection also has a [`RejectionReason`], the fixed word metrics and the access log use
//! (SPEC §6). Turning a rejection into a response records that word for the
//! [`Telemetry`](crate::telemetry::Telemetry) layer observing the request, if there is one.

use bytes::Bytes;
use http::header::{ALLOW, CONNECTION, CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE};
use http::{HeaderValue, Response, StatusCode};

use crate::body::ResponseBody;

pub(crate) const TEXT_PLAIN_UTF8: HeaderValue =
    HeaderValue::from_static("text/plain; charset=utf-8");

/// `Retry-After` values up to the default window, prebuilt: a 429 is the answer a flood gets, and
/// formatting the number would allocate on every one of them.
static RETRY_AFTER_SECS: [HeaderValue; 61] = [
    HeaderValue::from_static("0"),
    HeaderValue::from_static("1"),
    HeaderValue::from_static("2"),
    HeaderValue::from_static("3"),
    HeaderValue::from_static("4"),
    HeaderValue::from_static("5"),
    HeaderValue::from_static("6"),
    HeaderValue::from_static("7"),
    HeaderValue::from_static("8"),
    HeaderValue::from_static("9"),
    HeaderValue::from_static("10"),
    HeaderValue::from_static("11"),
    HeaderValue::from_static("12"),
    HeaderValue::from_static("13"),
    HeaderValue::from_static("14"),
    HeaderValue::from_static("15"),
    HeaderValue::from_static("16"),
    HeaderValue::from_static("17"),
    HeaderValue::from_static("18"),
    HeaderValue::from_static("19"),
    HeaderValue::from_static("20"),
    HeaderValue::from_static("21"),
    HeaderValue::from_static("22"),
    HeaderValue::from_static("23"),
    HeaderValue::from_static("24"),
    HeaderValue::from_static("25"),
    HeaderValue::from_static("26"),
    HeaderValue::from_static("27"),
    HeaderValue::from_static("28"),
    HeaderValue::from_static("29"),
    HeaderValue::from_static("30"),
    HeaderValue::from_static("31"),
    HeaderValue::from_static("32"),
    HeaderValue::from_static("33"),
    HeaderValue::from_static("34"),
    HeaderValue::from_static("35"),
    HeaderValue::from_static("36"),
    HeaderValue::from_static("37"),
    HeaderValue::from_static("38"),
    HeaderValue::from_static("39"),
    HeaderValue::from_static("40"),
    HeaderValue::from_static("41"),
    HeaderValue::from_static("42"),
    HeaderValue::from_static("43"),
    HeaderValue::from_static("44"),
    HeaderValue::from_static("45"),
    HeaderValue::from_static("46"),
    HeaderValue::from_static("47"),
    HeaderValue::from_static("48"),
    HeaderValue::from_static("49"),
    HeaderValue::from_static("50"),
    HeaderValue::from_static("51"),
    HeaderValue::from_static("52"),
    HeaderValue::from_static("53"),
    HeaderValue::from_static("54"),
    HeaderValue::from_static("55"),
    HeaderValue::from_static("56"),
    HeaderValue::from_static("57"),
    HeaderValue::from_static("58"),
    HeaderValue::from_static("59"),
    HeaderValue::from_static("60"),
];

fn retry_after(secs: u64) -> HeaderValue {
    let secs = secs.max(1);
    match RETRY_AFTER_SECS.get(secs as usize) {
        Some(value) => value.clone(),
        None => HeaderValue::from(secs),
    }
}

/// A request refused before it reached the inner service.
///
/// Each variant maps to one status, one exact body text and its headers; see
/// [`into_response`](Rejection::into_response).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Rejection {
    /// `404` `Not Found`: no route for the path.
    NotFound,
    /// `405` `Method Not Allowed` with `Allow: POST`.
    MethodNotAllowed,
    /// `429` `Too Many Requests` with `Retry-After` in seconds (at least 1): a rate limit.
    TooManyRequests {
        /// Seconds until the client may try again; `0` is sent as `1`.
        retry_after_secs: u64,
    },
    /// The same response as [`TooManyRequests`](Rejection::TooManyRequests), for a client IP locked
    /// out after too many failed authentications: only its [`reason`](Rejection::reason) differs.
    LockedOut {
        /// Seconds until the lockout ends; `0` is sent as `1`.
        retry_after_secs: u64,
    },
    /// `415` `Unsupported Media Type`.
    UnsupportedMediaType,
    /// `401` `unauthorized` with `WWW-Authenticate: Bearer`.
    Unauthorized,
    /// `401` `unauthorized` without `WWW-Authenticate`: a credential that is not a Bearer token
    /// (SPEC §8): a webhook signature that is missing, malformed, stale or wrong, or a secret in a
    /// custom header. The response does not invite a scheme the route does not speak.
    UnauthorizedNoChallenge,
    /// `403` `Forbidden`: the client IP is outside the route's allowlist (SPEC §8).
    ForbiddenIp,
    /// `400` `secret must not be sent in the query string`.
    SecretInQueryString,
    /// `400` `invalid Content-Length` with `Connection: close`: the header is not a number, or
    /// several `Content-Length` values disagree.
    InvalidContentLength,
    /// `413` `Payload too large` with `Connection: close`.
    PayloadTooLarge,
    /// `408` `Request body timeout` with `Connection: close`.
    RequestBodyTimeout,
    /// `400` `invalid request body`: the body is empty, not UTF-8, or not JSON.
    InvalidRequestBody,
    /// `500` `Internal Server Error`.
    InternalServerError,
    /// `503` `Service Unavailable`: the shared state a limiter decides with could not be reached
    /// and the store is set to refuse rather than fall back (SPEC §7).
    ServiceUnavailable,
}

impl Rejection {
    /// The status code.
    pub const fn status(self) -> StatusCode {
        match self {
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::TooManyRequests { .. } | Self::LockedOut { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::Unauthorized | Self::UnauthorizedNoChallenge => StatusCode::UNAUTHORIZED,
            Self::ForbiddenIp => StatusCode::FORBIDDEN,
            Self::SecretInQueryString | Self::InvalidContentLength | Self::InvalidRequestBody => {
                StatusCode::BAD_REQUEST
            }
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::RequestBodyTimeout => StatusCode::REQUEST_TIMEOUT,
            Self::InternalServerError => StatusCode::INTERNAL_SERVER_ERROR,
            Self::ServiceUnavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The exact body text.
    pub const fn text(self) -> &'static str {
        match self {
            Self::NotFound => "Not Found",
            Self::MethodNotAllowed => "Method Not Allowed",
            Self::TooManyRequests { .. } | Self::LockedOut { .. } => "Too Many Requests",
            Self::UnsupportedMediaType => "Unsupported Media Type",
            Self::Unauthorized | Self::UnauthorizedNoChallenge => "unauthorized",
            Self::ForbiddenIp => "Forbidden",
            Self::SecretInQueryString => "secret must not be sent in the query string",
            Self::InvalidContentLength => "invalid Content-Length",
            Self::PayloadTooLarge => "Payload too large",
            Self::RequestBodyTimeout => "Request body timeout",
            Self::InvalidRequestBody => "invalid request body",
            Self::InternalServerError => "Internal Server Error",
            Self::ServiceUnavailable => "Service Unavailable",
        }
    }

    /// The word metrics and the access log count this rejection under; `None` for `404` (not a
    /// refusal: the request is simply not ours) and `500` (a failure, not a refusal). A `503` is
    /// `service_unavailable`: a store refused to decide, so the request was refused.
    ///
    /// A `429` from [`TooManyRequests`](Rejection::TooManyRequests) is `rate_limited`; the in-flight
    /// limit records [`RejectionReason::InFlight`] in its place.
    pub const fn reason(self) -> Option<RejectionReason> {
        match self {
            Self::NotFound | Self::InternalServerError => None,
            Self::ServiceUnavailable => Some(RejectionReason::ServiceUnavailable),
            Self::MethodNotAllowed => Some(RejectionReason::Method),
            Self::TooManyRequests { .. } => Some(RejectionReason::RateLimited),
            Self::LockedOut { .. } => Some(RejectionReason::LockedOut),
            Self::UnsupportedMediaType => Some(RejectionReason::MediaType),
            Self::Unauthorized | Self::UnauthorizedNoChallenge => {
                Some(RejectionReason::Unauthorized)
            }
            Self::ForbiddenIp => Some(RejectionReason::ForbiddenIp),
            Self::SecretInQueryString | Self::InvalidContentLength => {
                Some(RejectionReason::InvalidRequest)
            }
            Self::PayloadTooLarge => Some(RejectionReason::PayloadTooLarge),
            Self::RequestBodyTimeout => Some(RejectionReason::BodyTimeout),
            Self::InvalidRequestBody => Some(RejectionReason::InvalidBody),
        }
    }

    /// Whether the response tells the client the connection will close. True where the request body
    /// was left unread or only partly read, so the connection cannot carry another request.
    pub const fn closes_connection(self) -> bool {
        matches!(
            self,
            Self::PayloadTooLarge | Self::RequestBodyTimeout | Self::InvalidContentLength
        )
    }

    /// The response: status, `Content-Type: text/plain; charset=utf-8`, the variant's headers and
    /// its exact text. Records the [`reason`](Rejection::reason) for the observing
    /// [`Telemetry`](crate::telemetry::Telemetry) layer, if any.
    pub fn into_response<B>(self) -> Response<ResponseBody<B>> {
        #[cfg(feature = "telemetry")]
        if let Some(reason) = self.reason() {
            crate::telemetry::record_rejection(reason);
        }
        let mut response = Response::new(ResponseBody::full(Bytes::from_static(
            self.text().as_bytes(),
        )));
        *response.status_mut() = self.status();
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, TEXT_PLAIN_UTF8);
        match self {
            Self::MethodNotAllowed => {
                headers.insert(ALLOW, HeaderValue::from_static("POST"));
            }
            Self::TooManyRequests { retry_after_secs } | Self::LockedOut { retry_after_secs } => {
                headers.insert(RETRY_AFTER, retry_after(retry_after_secs));
            }
            Self::Unauthorized => {
                headers.insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            _ => {}
        }
        if self.closes_connection() {
            headers.insert(CONNECTION, HeaderValue::from_static("close"));
        }
        response
    }
}

/// Why a request was refused, as the fixed word of SPEC §6: the `reason` label of
/// `webhook_rejections_total` and the `reason` field of the access log.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RejectionReason {
    /// `method`: not `POST` (`405`).
    Method,
    /// `rate_limited`: the fixed-window rate limit (`429`).
    RateLimited,
    /// `media_type`: not JSON (`415`).
    MediaType,
    /// `in_flight`: the in-flight limit (`429`).
    InFlight,
    /// `unauthorized`: no or a wrong secret (`401`).
    Unauthorized,
    /// `locked_out`: the client IP is locked out after failed authentications (`429`).
    LockedOut,
    /// `forbidden_ip`: the client IP is outside the route's allowlist (`403`).
    ForbiddenIp,
    /// `payload_too_large`: the body is over the cap (`413`).
    PayloadTooLarge,
    /// `body_timeout`: the body did not arrive in time (`408`).
    BodyTimeout,
    /// `invalid_body`: the body is empty, not UTF-8 or not JSON (`400` `invalid request body`).
    InvalidBody,
    /// `invalid_request`: a schema violation, a secret in the query string, or a malformed
    /// `Content-Length` (`400`).
    InvalidRequest,
    /// `service_unavailable`: the shared state a limiter or the lockout decides with could not be
    /// reached, and the store is set to refuse rather than fall back (`503`, SPEC §7). Not one of
    /// SPEC §6's words: a refusal the operator should see, since no request gets through while it
    /// lasts.
    ServiceUnavailable,
}

impl RejectionReason {
    /// Every reason, in the order of SPEC §6, then `service_unavailable`.
    pub const ALL: [Self; 12] = [
        Self::Method,
        Self::RateLimited,
        Self::MediaType,
        Self::InFlight,
        Self::Unauthorized,
        Self::LockedOut,
        Self::ForbiddenIp,
        Self::PayloadTooLarge,
        Self::BodyTimeout,
        Self::InvalidBody,
        Self::InvalidRequest,
        Self::ServiceUnavailable,
    ];

    /// The word, as metrics label it and the access log writes it.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Method => "method",
            Self::RateLimited => "rate_limited",
            Self::MediaType => "media_type",
            Self::InFlight => "in_flight",
            Self::Unauthorized => "unauthorized",
            Self::LockedOut => "locked_out",
            Self::ForbiddenIp => "forbidden_ip",
            Self::PayloadTooLarge => "payload_too_large",
            Self::BodyTimeout => "body_timeout",
            Self::InvalidBody => "invalid_body",
            Self::InvalidRequest => "invalid_request",
            Self::ServiceUnavailable => "service_unavailable",
        }
    }

    /// The position in [`ALL`](Self::ALL): an index for per-reason tables.
    pub const fn index(self) -> usize {
        self as usize
    }
}

impl std::fmt::Display for RejectionReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::fmt::Display for Rejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status().as_u16(), self.text())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, Empty};

    async fn parts(rejection: Rejection) -> (StatusCode, http::HeaderMap, String) {
        let response = rejection.into_response::<Empty<Bytes>>();
        let (parts, body) = response.into_parts();
        let bytes = body.collect().await.unwrap().to_bytes();
        (
            parts.status,
            parts.headers,
            String::from_utf8(bytes.to_vec()).unwrap(),
        )
    }

    #[tokio::test]
    async fn every_rejection_has_its_status_text_and_headers() {
        let cases = [
            (Rejection::NotFound, 404, "Not Found", vec![]),
            (
                Rejection::MethodNotAllowed,
                405,
                "Method Not Allowed",
                vec![("allow", "POST")],
            ),
            (
                Rejection::TooManyRequests {
                    retry_after_secs: 17,
                },
                429,
                "Too Many Requests",
                vec![("retry-after", "17")],
            ),
            (
                Rejection::TooManyRequests {
                    retry_after_secs: 0,
                },
                429,
                "Too Many Requests",
                vec![("retry-after", "1")],
            ),
            (
                Rejection::LockedOut {
                    retry_after_secs: 42,
                },
                429,
                "Too Many Requests",
                vec![("retry-after", "42")],
            ),
            (
                Rejection::UnsupportedMediaType,
                415,
                "Unsupported Media Type",
                vec![],
            ),
            (
                Rejection::Unauthorized,
                401,
                "unauthorized",
                vec![("www-authenticate", "Bearer")],
            ),
            (
                Rejection::UnauthorizedNoChallenge,
                401,
                "unauthorized",
                vec![],
            ),
            (Rejection::ForbiddenIp, 403, "Forbidden", vec![]),
            (
                Rejection::SecretInQueryString,
                400,
                "secret must not be sent in the query string",
                vec![],
            ),
            (
                Rejection::InvalidContentLength,
                400,
                "invalid Content-Length",
                vec![("connection", "close")],
            ),
            (
                Rejection::PayloadTooLarge,
                413,
                "Payload too large",
                vec![("connection", "close")],
            ),
            (
                Rejection::RequestBodyTimeout,
                408,
                "Request body timeout",
                vec![("connection", "close")],
            ),
            (
                Rejection::InvalidRequestBody,
                400,
                "invalid request body",
                vec![],
            ),
            (
                Rejection::InternalServerError,
                500,
                "Internal Server Error",
                vec![],
            ),
        ];
        for (rejection, status, text, headers) in cases {
            let (got_status, got_headers, got_text) = parts(rejection).await;
            assert_eq!(got_status.as_u16(), status, "{rejection:?}");
            assert_eq!(got_text, text, "{rejection:?}");
            assert_eq!(got_headers["content-type"], "text/plain; charset=utf-8");
            assert_eq!(
                got_headers.len(),
                1 + headers.len(),
                "{rejection:?}: {got_headers:?}"
            );
            for (name, value) in headers {
                assert_eq!(got_headers[name], value, "{rejection:?}");
            }
        }
    }

    #[test]
    fn every_reason_is_its_spec_word_and_sits_at_its_index() {
        let words: Vec<&str> = RejectionReason::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(
            words,
            [
                "method",
                "rate_limited",
                "media_type",
                "in_flight",
                "unauthorized",
                "locked_out",
                "forbidden_ip",
                "payload_too_large",
                "body_timeout",
                "invalid_body",
                "invalid_request",
                "service_unavailable",
            ]
        );
        for (i, reason) in RejectionReason::ALL.iter().enumerate() {
            assert_eq!(reason.index(), i);
        }
    }

    #[test]
    fn a_lockout_is_told_apart_from_a_rate_limit_by_its_reason_only() {
        let limited = Rejection::TooManyRequests {
            retry_after_secs: 5,
        };
        let locked = Rejection::LockedOut {
            retry_after_secs: 5,
        };
        assert_eq!(limited.status(), locked.status());
        assert_eq!(limited.text(), locked.text());
        assert_eq!(limited.reason(), Some(RejectionReason::RateLimited));
        assert_eq!(locked.reason(), Some(RejectionReason::LockedOut));
        assert_eq!(Rejection::NotFound.reason(), None);
        assert_eq!(Rejection::InternalServerError.reason(), None);
    }

    #[tokio::test]
    async fn an_unavailable_store_is_a_plain_503_counted_as_service_unavailable() {
        let (status, headers, text) = parts(Rejection::ServiceUnavailable).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(text, "Service Unavailable");
        assert_eq!(headers.len(), 1);
        assert_eq!(headers["content-type"], "text/plain; charset=utf-8");
        assert_eq!(
            Rejection::ServiceUnavailable.reason(),
            Some(RejectionReason::ServiceUnavailable)
        );
    }
}
