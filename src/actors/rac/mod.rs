//! The RAC domain: instances that share one store of blocks and keep their buffer caches
//! coherent by shipping blocks to each other (Cache Fusion), under global locks mastered in a
//! Global Resource Directory.

pub mod directory;
pub mod cache;
pub mod ring;
pub mod store;
