//! An event filter from query-string pairs (`node_ids=a,b&min_severity=warning`), as the WebSocket
//! endpoints take one at connect time and `GET /api/v1/events` takes one always.

use crate::messages::events::{EventFilter, FilterError, SubjectKind};

/// Parses a filter from query-string pairs. Pairs whose key is in `ignore` (e.g. `token`) are
/// skipped; any other unknown key is an error. Lists are comma-separated.
pub fn filter_from_query<'a>(
    pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
    ignore: &[&str],
) -> Result<EventFilter, FilterError> {
    let mut f = EventFilter::default();
    for (key, value) in pairs {
        if ignore.contains(&key) {
            continue;
        }
        let err = |reason: String| FilterError { field: key.to_string(), reason };
        let list = || value.split(',').map(str::trim).filter(|s| !s.is_empty());
        if let Some(kind) = SubjectKind::from_field(key) {
            f.ids_mut(kind).extend(list().map(String::from));
            continue;
        }
        match key {
            "event_types" => {
                for t in list() {
                    f.event_types.push(t.parse().map_err(err)?);
                }
            }
            "categories" => {
                for c in list() {
                    f.categories.push(c.parse().map_err(err)?);
                }
            }
            "min_severity" => f.min_severity = Some(value.parse().map_err(err)?),
            "since_seq" => {
                f.since_seq = Some(
                    value
                        .parse()
                        .map_err(|_| err(format!("expected a non-negative integer, got '{value}'")))?,
                )
            }
            other => {
                let flag = match value {
                    "true" | "1" => Some(true),
                    "false" | "0" => Some(false),
                    _ => None,
                };
                match f.include_mut(other) {
                    Some(slot) => {
                        *slot = Some(flag.ok_or_else(|| err(format!("expected true or false, got '{value}'")))?)
                    }
                    None => return Err(err(format!("unknown filter field '{other}'"))),
                }
            }
        }
    }
    f.validate()?;
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_pairs_name_the_field() {
        let e = filter_from_query([("since_seq", "x")], &[]).unwrap_err();
        assert_eq!(e.field, "since_seq");
        let e = filter_from_query([("bogus", "1")], &["token"]).unwrap_err();
        assert_eq!(e.field, "bogus");
        let e = filter_from_query([("include_conflicts", "maybe")], &[]).unwrap_err();
        assert_eq!(e.field, "include_conflicts");
        let f = filter_from_query(
            [("node_ids", "node-4,node-5"), ("token", "t"), ("include_health_changes", "false")],
            &["token"],
        )
        .expect("valid");
        assert_eq!(f.ids(SubjectKind::Node), ["node-4", "node-5"]);
        assert_eq!(f.include("include_health_changes"), Some(false));
    }
}
