//! Transforms: each turns collected functions and calls into text edits.

pub(crate) mod profile;
pub(crate) mod wrap;
