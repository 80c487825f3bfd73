//! Layer 4, the core: the experiment file ([`config`]), the run directory ([`store`]), metrics
//! ([`report`]), predicted memory peaks ([`plan`]), chunked generation ([`generate`]), chat
//! templates ([`prompt`]), grading and the dataset ([`rft`]) and question sets ([`data`]).
pub mod config;
pub mod data;
pub mod generate;
pub mod plan;
pub mod prompt;
pub mod report;
pub mod rft;
pub mod store;
