//! Query-string values that must not land in spans. The HTTP conventions ask `url.query` and
//! `url.full` to replace the values of `AWSAccessKeyId`, `Signature`, `sig` and
//! `X-Goog-Signature` with `REDACTED`; the fleet adds credentials by other common names and the
//! personal data its own routes take (`/outbox?to=` is an email address).

use std::borrow::Cow;

/// Keys whose values are replaced, compared without regard to ASCII case.
pub const SENSITIVE_QUERY_KEYS: &[&str] = &[
    // The semantic conventions' list.
    "AWSAccessKeyId",
    "Signature",
    "sig",
    "X-Goog-Signature",
    // Credentials by other names.
    "token",
    "access_token",
    "refresh_token",
    "id_token",
    "api_key",
    "apikey",
    "key",
    "password",
    "secret",
    "client_secret",
    "code",
    // Personal data the fleet's own routes take.
    "to",
    "email",
    "customer_email",
    "card_number",
];

pub const REDACTED: &str = "REDACTED";

fn sensitive(key: &str) -> bool {
    SENSITIVE_QUERY_KEYS
        .iter()
        .any(|k| k.eq_ignore_ascii_case(key))
}

/// `query` with the value of every sensitive key replaced by `REDACTED`; borrowed when there is
/// nothing to replace (the common case costs no allocation).
pub fn redact_query(query: &str) -> Cow<'_, str> {
    let needs = query.split('&').any(|pair| match pair.split_once('=') {
        Some((k, v)) => sensitive(k) && v != REDACTED,
        None => false,
    });
    if !needs {
        return Cow::Borrowed(query);
    }
    let pairs: Vec<Cow<'_, str>> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((k, _)) if sensitive(k) => Cow::Owned(format!("{k}={REDACTED}")),
            _ => Cow::Borrowed(pair),
        })
        .collect();
    Cow::Owned(pairs.join("&"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_values_of_sensitive_keys_only() {
        assert!(matches!(
            redact_query("limit=5&q=x"),
            Cow::Borrowed("limit=5&q=x")
        ));
        assert_eq!(
            redact_query("access_token=abc&sig=def&limit=5&Signature=x"),
            "access_token=REDACTED&sig=REDACTED&limit=5&Signature=REDACTED"
        );
        assert_eq!(redact_query("to=ada%40example.com"), "to=REDACTED");
        assert_eq!(
            redact_query("X-GOOG-SIGNATURE=1&flag"),
            "X-GOOG-SIGNATURE=REDACTED&flag"
        );
        assert_eq!(redact_query(""), "");
        assert_eq!(redact_query("token="), "token=REDACTED");
    }
}
