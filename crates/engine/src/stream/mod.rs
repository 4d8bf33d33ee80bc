//! Continuous jobs: loading each dataset's topic into the lake exactly once ([`topic_load`]) and the landing folder
//! ([`landing`]).
//! Windows, watermarks and checkpointed state come here next, on the same tables.

pub mod landing;
pub mod topic_load;
