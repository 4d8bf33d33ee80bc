//! Continuous jobs: loading each dataset's topic into the lake exactly once ([`topic_load`], with the dedupe
//! windows it keeps in the lake, [`dedupe`]) and the landing folder ([`landing`]).
//! Windows, watermarks and checkpointed state come here next, on the same tables.

pub mod dedupe;
pub mod landing;
pub mod topic_load;
pub mod view;
