//! Continuous jobs over the log. Today: loading order topics into the lake exactly once ([`topic_load`]).
//! Windows, watermarks and checkpointed state come here next, on the same tables.

pub mod topic_load;
