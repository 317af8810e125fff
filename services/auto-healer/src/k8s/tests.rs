//! Mock API tests.
