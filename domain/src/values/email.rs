use serde::{Deserialize, Serialize};

use super::{string_value, ValueError};

/// An email address: trimmed, exactly one `@`, a non-empty local part of at most
/// 64 characters, a domain with at least one dot and well-formed labels, at most
/// 254 characters in all. It is kept normalised ([`Email::key`]: Unicode NFKC, then lower
/// case), so that the account, its log-in and its throttle all name one address the same way.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Email(String);

impl Email {
    pub const MAX_LEN: usize = 254;
    const MAX_LOCAL_LEN: usize = 64;

    /// The one form of an address that accounts are stored and looked up by, and log-ins
    /// throttled by: trimmed, Unicode NFKC (a full-width `ａ` is `a`), then lower case by
    /// Unicode's rules (`İ` is `i̇`), whatever the database's collation would say.
    pub fn key(input: &str) -> String {
        use unicode_normalization::UnicodeNormalization;
        input.trim().nfkc().collect::<String>().to_lowercase()
    }

    pub fn parse(input: impl AsRef<str>) -> Result<Self, ValueError> {
        let normalised = Self::key(input.as_ref());
        let input = normalised.as_str();
        if input.is_empty() {
            return Err(ValueError::Empty);
        }
        if input.chars().count() > Self::MAX_LEN {
            return Err(ValueError::TooLong { max: Self::MAX_LEN });
        }
        let (local, domain) = input.split_once('@').ok_or(ValueError::InvalidEmail)?;
        if domain.contains('@') {
            return Err(ValueError::InvalidEmail);
        }
        if local.is_empty()
            || local.chars().count() > Self::MAX_LOCAL_LEN
            || local.chars().any(|c| c.is_whitespace() || c.is_control())
            || local.starts_with('.')
            || local.ends_with('.')
            || local.contains("..")
        {
            return Err(ValueError::InvalidEmail);
        }
        let domain = domain.to_lowercase();
        let labels: Vec<&str> = domain.split('.').collect();
        let label_ok = |l: &&str| {
            !l.is_empty()
                && l.chars().count() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_alphanumeric() || c == '-')
        };
        if labels.len() < 2 || !labels.iter().all(label_ok) {
            return Err(ValueError::InvalidEmail);
        }
        Ok(Self(format!("{local}@{domain}")))
    }

    pub fn local_part(&self) -> &str {
        self.0.split_once('@').map_or("", |(local, _)| local)
    }

    pub fn domain(&self) -> &str {
        self.0.split_once('@').map_or("", |(_, domain)| domain)
    }
}
string_value!(Email);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_and_normalises_valid_addresses() {
        let email = Email::parse("  Jane.Doe+x@Example.COM ").unwrap();
        assert_eq!(email.as_str(), "jane.doe+x@example.com");
        assert_eq!(email.local_part(), "jane.doe+x");
        assert_eq!(email.domain(), "example.com");
        assert!(Email::parse("a@b.co").is_ok());
        assert!(Email::parse("a@sub-domain.example.org").is_ok());
    }

    #[test]
    fn the_key_is_nfkc_then_lower_case_and_parse_keeps_it() {
        // Turkish dotted capital I lower-cases to i + combining dot, as Rust says, not as a
        // database collation might; full-width letters and ligatures fold by NFKC.
        assert_eq!(Email::key(" İnci@Example.org "), "i\u{307}nci@example.org");
        assert_eq!(Email::key("ｊａｎｅ@example.org"), "jane@example.org");
        assert_eq!(Email::key("ﬁona@example.org"), "fiona@example.org");
        assert_eq!(
            Email::key("ANNA@EXAMPLE.ORG"),
            Email::key("anna@example.org")
        );
        let parsed = Email::parse("İnci@Example.org").unwrap();
        assert_eq!(parsed.as_str(), Email::key("İnci@Example.org"));
        assert_eq!(
            Email::parse("ｊａｎｅ@example.org").unwrap().as_str(),
            "jane@example.org"
        );
    }

    #[test]
    fn rejects_invalid_addresses() {
        for bad in [
            "plain",
            "@example.com",
            "a@",
            "a@b",
            "a@@b.com",
            "a@b@c.com",
            "a b@c.com",
            "a@b..com",
            "a@.b.com",
            "a@b.com.",
            "a@-b.com",
            "a@b_c.com",
            ".a@b.com",
            "a..b@c.com",
        ] {
            assert_eq!(Email::parse(bad), Err(ValueError::InvalidEmail), "{bad}");
        }
        assert_eq!(Email::parse("  "), Err(ValueError::Empty));
    }

    #[test]
    fn rejects_overlong_addresses() {
        let long = format!("a@{}.com", "b".repeat(260));
        assert_eq!(Email::parse(&long), Err(ValueError::TooLong { max: 254 }));
        let long_local = format!("{}@b.com", "a".repeat(65));
        assert_eq!(Email::parse(&long_local), Err(ValueError::InvalidEmail));
    }

    #[test]
    fn serde_validates() {
        let email: Email = serde_json::from_str("\"x@Y.org\"").unwrap();
        assert_eq!(serde_json::to_string(&email).unwrap(), "\"x@y.org\"");
        assert!(serde_json::from_str::<Email>("\"nope\"").is_err());
    }

    #[test]
    fn generated_addresses_round_trip() {
        // A small deterministic property check: every well-formed local@domain.tld parses
        // and parsing is idempotent.
        let locals = ["a", "john.smith", "x_y", "n+tag", "UPPER"];
        let domains = [
            "example.com",
            "Mail.Example.ORG",
            "a-b.io",
            "xn--bcher-kva.de",
        ];
        for local in locals {
            for domain in domains {
                let email = Email::parse(format!("{local}@{domain}")).unwrap();
                assert_eq!(Email::parse(email.as_str()).unwrap(), email);
            }
        }
    }
}
