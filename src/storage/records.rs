//! Small durable records (JSON a domain encodes) in tables each domain names for itself, and
//! the process-wide meta counters; on disk in [`super::DB_FILE`].

use super::StorageError;

/// A record table, named by the domain that owns it, e.g. in its actor's module:
/// `pub const REPLICAS: RecordTable = RecordTable::named("replicas");`. The store creates it on
/// its first write and reads it as empty until then, so it keeps no list of tables. The name is
/// the table's name on disk: renaming one leaves its records behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RecordTable(&'static str);

/// The table of the meta counters, in the same file.
const META_TABLE: &str = "meta";

impl RecordTable {
    /// The table called `name`. Declared as a `const`, so a clash with the store's own table
    /// fails the build, not the server.
    pub const fn named(name: &'static str) -> RecordTable {
        assert!(!same(name, META_TABLE), "\"meta\" is the store's own table");
        assert!(!name.is_empty(), "a record table needs a name");
        RecordTable(name)
    }

    pub const fn name(self) -> &'static str {
        self.0
    }
}

/// `a == b`, in a `const fn`.
const fn same(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// Records and meta counters; every write returns once it is durable.
pub trait RecordStore {
    /// A meta counter (the event sequence reserved, what was bootstrapped), `None` if never set.
    fn get_meta(&self, key: &str) -> Result<Option<u64>, StorageError>;

    /// Writes `key = value` and returns once it is durable.
    fn put_meta(&self, key: &str, value: u64) -> Result<(), StorageError>;

    /// Writes one record and returns once it is durable.
    fn put_record(&self, table: RecordTable, key: &str, value: &[u8]) -> Result<(), StorageError>;

    /// Deletes one record (absent is fine) and returns once that is durable.
    fn delete_record(&self, table: RecordTable, key: &str) -> Result<(), StorageError>;

    fn get_record(&self, table: RecordTable, key: &str) -> Result<Option<Vec<u8>>, StorageError>;

    /// Every record of `table`, in key order.
    fn list_records(&self, table: RecordTable) -> Result<Vec<(String, Vec<u8>)>, StorageError>;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::{Store, DB_FILE};

    const NODES: RecordTable = RecordTable::named("cluster_nodes");

    #[test]
    fn disk_store_keeps_what_was_committed_across_reopen() {
        let dir = tempfile::tempdir().expect("temp dir");
        {
            let s = Store::open_dir(dir.path()).expect("open");
            s.put_meta("event_seq_reserved", 42).expect("put");
            s.put_record(NODES, "node-4", b"{}").expect("put");
            s.put_record(NODES, "node-5", b"{}").expect("put");
            s.delete_record(NODES, "node-5").expect("delete");
        }
        let s = Store::open_dir(dir.path()).expect("reopen");
        assert_eq!(s.get_meta("event_seq_reserved").expect("get"), Some(42));
        let rows = s.list_records(NODES).expect("list");
        assert_eq!(rows, vec![("node-4".to_string(), b"{}".to_vec())]);
    }

    fn check_tables_by_name(s: &Store) {
        let other = RecordTable::named("other");
        assert_eq!(s.list_records(other).expect("list"), vec![], "a table never written reads empty");
        assert_eq!(s.get_record(other, "k").expect("get"), None);
        s.delete_record(other, "k").expect("deleting from a table never written");
        assert_eq!(s.get_meta("never").expect("get"), None);
        s.put_record(other, "k", b"1").expect("put");
        s.put_record(NODES, "k", b"2").expect("put");
        assert_eq!(s.get_record(other, "k").expect("get"), Some(b"1".to_vec()), "tables stay apart");
        assert_eq!(s.list_records(NODES).expect("list"), vec![("k".to_string(), b"2".to_vec())]);
    }

    #[test]
    fn tables_are_created_on_first_write_on_disk_and_in_memory() {
        check_tables_by_name(&Store::memory());
        let dir = tempfile::tempdir().expect("temp dir");
        check_tables_by_name(&Store::open_dir(dir.path()).expect("open"));
    }

    #[test]
    fn a_table_written_by_an_earlier_version_is_read_by_its_name() {
        let dir = tempfile::tempdir().expect("temp dir");
        {
            // What the store with a fixed list of tables left: every table created at open.
            let db = redb::Database::create(dir.path().join(DB_FILE)).expect("create");
            let tx = db.begin_write().expect("tx");
            let mut replicas = tx.open_table(redb::TableDefinition::<&str, &[u8]>::new("replicas")).expect("table");
            replicas.insert("r1", b"{}".as_slice()).expect("insert");
            drop(replicas);
            tx.open_table(redb::TableDefinition::<&str, &[u8]>::new("slots")).expect("table");
            tx.commit().expect("commit");
        }
        let s = Store::open_dir(dir.path()).expect("open");
        assert_eq!(s.list_records(RecordTable::named("replicas")).expect("list"), vec![("r1".to_string(), b"{}".to_vec())]);
        assert_eq!(s.list_records(RecordTable::named("slots")).expect("list"), vec![]);
    }
}
