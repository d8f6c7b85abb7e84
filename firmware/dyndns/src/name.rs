//! DNS name comparison, shared by the check-IP agreement (distinct hosts) and the DNS verdict
//! (our MX or a foreign one). Owns nothing; calls nothing.

fn strip_dot(name: &str) -> &str {
    name.strip_suffix('.').unwrap_or(name)
}

/// Whether two DNS names are the same (ASCII case-insensitive, trailing dot ignored).
pub fn same_name(a: &str, b: &str) -> bool {
    strip_dot(a).eq_ignore_ascii_case(strip_dot(b))
}

#[cfg(test)]
mod tests {
    use super::same_name;

    #[test]
    fn case_and_a_trailing_dot_do_not_make_names_different() {
        assert!(same_name("Home.Example.NET.", "home.example.net"));
        assert!(!same_name("home.example.net", "home.example.org"));
        assert!(!same_name("example.net", "xample.net"));
    }
}
