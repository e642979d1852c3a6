//! The words of RAC's Cache Fusion: blocks named `file:block`, their versions (SCNs), the global
//! lock modes instances hold them in, and how a block reached the instance that asked for it.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A version of a block: the system change number of the write that made it, from a cluster-wide
/// Lamport clock (every message carries its sender's, every write takes one past all it saw), so
/// a later write to a block always has a higher SCN. 0 is a block never written.
pub type Scn = u64;

/// A block of the shared store, as Oracle names them: data file and block number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BlockId {
    pub file: u32,
    pub block: u64,
}

impl fmt::Display for BlockId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file, self.block)
    }
}

impl FromStr for BlockId {
    type Err = String;

    fn from_str(s: &str) -> Result<BlockId, String> {
        let bad = || format!("'{s}' is not a block id: expected file:block, two unsigned integers (e.g. 1:42)");
        let (file, block) = s.split_once(':').ok_or_else(bad)?;
        let digits = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
        if !digits(file) || !digits(block) {
            return Err(bad());
        }
        Ok(BlockId { file: file.parse().map_err(|_| bad())?, block: block.parse().map_err(|_| bad())? })
    }
}

impl Serialize for BlockId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for BlockId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<BlockId, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// A global lock mode on a block (GCS): null (no rights; the instance may keep a past image),
/// shared (read the current version; many at once), exclusive (write; one, and no shared).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, utoipa::ToSchema, async_graphql::Enum)]
#[serde(rename_all = "snake_case")]
pub enum LockMode {
    Null,
    Shared,
    Exclusive,
}

impl LockMode {
    pub fn as_str(self) -> &'static str {
        match self {
            LockMode::Null => "null",
            LockMode::Shared => "shared",
            LockMode::Exclusive => "exclusive",
        }
    }

    /// Whether holding `self` gives what `wanted` asks for.
    pub fn covers(self, wanted: LockMode) -> bool {
        self >= wanted
    }
}

/// How a block reached the instance that asked for it, as Oracle's wait events name it: shipped
/// by the master itself, which held it (`2-way`: requester, master); by another holder the master
/// forwarded the request to (`3-way`); read from the shared store (`disk`); or already in the
/// instance's cache with the lock it needed or a conversion (`local`, no block moved).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema, async_graphql::Enum)]
pub enum TransferKind {
    #[serde(rename = "2-way")]
    TwoWay,
    #[serde(rename = "3-way")]
    ThreeWay,
    #[serde(rename = "disk")]
    Disk,
    #[serde(rename = "local")]
    Local,
}

impl TransferKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TransferKind::TwoWay => "2-way",
            TransferKind::ThreeWay => "3-way",
            TransferKind::Disk => "disk",
            TransferKind::Local => "local",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_ids_read_and_print_as_file_colon_block() {
        let id: BlockId = "1:42".parse().expect("parse");
        assert_eq!(id, BlockId { file: 1, block: 42 });
        assert_eq!(id.to_string(), "1:42");
        for bad in ["", "1", "1:", ":2", "a:1", "1:-2", "1:2:3", " 1:2", "1:+2", "99999999999:1"] {
            assert!(bad.parse::<BlockId>().is_err(), "{bad:?} must be refused");
        }
        assert_eq!(serde_json::to_string(&id).expect("json"), "\"1:42\"");
    }

    #[test]
    fn modes_cover_the_weaker_ones() {
        assert!(LockMode::Exclusive.covers(LockMode::Shared));
        assert!(LockMode::Shared.covers(LockMode::Shared));
        assert!(!LockMode::Shared.covers(LockMode::Exclusive));
        assert!(!LockMode::Null.covers(LockMode::Shared));
    }
}
