//! The disk engine's records and meta counters, in [`crate::storage::DB_FILE`]: a redb table
//! per [`RecordTable`], under the name its domain gave it.

use redb::{ReadableTable, TableDefinition};

use super::{open, DiskEngine, Failure, META};
use crate::storage::{RecordStore, RecordTable, StorageError};

fn definition(table: RecordTable) -> TableDefinition<'static, &'static str, &'static [u8]> {
    TableDefinition::new(table.name())
}

/// `table` in a read transaction, `None` if it was never written (created on first write).
fn existing(tx: &redb::ReadTransaction, table: RecordTable) -> Result<Option<redb::ReadOnlyTable<&'static str, &'static [u8]>>, Failure> {
    match tx.open_table(definition(table)) {
        Ok(t) => Ok(Some(t)),
        Err(redb::TableError::TableDoesNotExist(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

impl RecordStore for DiskEngine {
    fn get_meta(&self, key: &str) -> Result<Option<u64>, StorageError> {
        open(&self.db)?.read("read a meta counter", |tx| Ok(tx.open_table(META)?.get(key)?.map(|v| v.value())))
    }

    fn put_meta(&self, key: &str, value: u64) -> Result<(), StorageError> {
        open(&self.db)?.write("write a meta counter", |tx| {
            tx.open_table(META)?.insert(key, value)?;
            Ok(())
        })
    }

    fn put_record(&self, table: RecordTable, key: &str, value: &[u8]) -> Result<(), StorageError> {
        open(&self.db)?.write("write a record", |tx| {
            tx.open_table(definition(table))?.insert(key, value)?;
            Ok(())
        })
    }

    fn delete_record(&self, table: RecordTable, key: &str) -> Result<(), StorageError> {
        open(&self.db)?.write("delete a record", |tx| {
            tx.open_table(definition(table))?.remove(key)?;
            Ok(())
        })
    }

    fn get_record(&self, table: RecordTable, key: &str) -> Result<Option<Vec<u8>>, StorageError> {
        open(&self.db)?.read("read a record", |tx| match existing(tx, table)? {
            Some(t) => Ok(t.get(key)?.map(|v| v.value().to_vec())),
            None => Ok(None),
        })
    }

    fn list_records(&self, table: RecordTable) -> Result<Vec<(String, Vec<u8>)>, StorageError> {
        open(&self.db)?.read("list records", |tx| {
            let mut out = Vec::new();
            if let Some(t) = existing(tx, table)? {
                for row in t.iter()? {
                    let (k, v) = row?;
                    out.push((k.value().to_string(), v.value().to_vec()));
                }
            }
            Ok(out)
        })
    }
}
