//! Statement parameters and column values, as both databases take and give them.

use super::DbError;

/// A parameter or column value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// An integer (PostgreSQL `BIGINT`), or NULL.
    Int(Option<i64>),
    /// Text, or NULL.
    Text(Option<String>),
    /// Bytes (PostgreSQL `BYTEA`), or NULL.
    Blob(Option<Vec<u8>>),
}

/// Something that can be a statement parameter.
pub trait ToValue {
    /// The value it binds as.
    fn to_value(&self) -> Value;
}

macro_rules! int_value {
    ($($t:ty),*) => {$(
        impl ToValue for $t {
            fn to_value(&self) -> Value {
                Value::Int(Some(i64::try_from(*self).unwrap_or(i64::MAX)))
            }
        }
    )*};
}
int_value!(i64, i32, u32, u64, usize);

impl ToValue for bool {
    fn to_value(&self) -> Value {
        Value::Int(Some(i64::from(*self)))
    }
}

impl ToValue for str {
    fn to_value(&self) -> Value {
        Value::Text(Some(self.to_string()))
    }
}

impl ToValue for String {
    fn to_value(&self) -> Value {
        Value::Text(Some(self.clone()))
    }
}

impl ToValue for [u8] {
    fn to_value(&self) -> Value {
        Value::Blob(Some(self.to_vec()))
    }
}

impl ToValue for Vec<u8> {
    fn to_value(&self) -> Value {
        Value::Blob(Some(self.clone()))
    }
}

impl<T: ToValue + ?Sized> ToValue for &T {
    fn to_value(&self) -> Value {
        (**self).to_value()
    }
}

impl<T: ToValue + Nullable> ToValue for Option<T> {
    fn to_value(&self) -> Value {
        match self {
            Some(v) => v.to_value(),
            None => T::null(),
        }
    }
}

/// The NULL of a parameter's type (PostgreSQL types even a NULL parameter).
pub trait Nullable {
    /// A NULL of this type.
    fn null() -> Value;
}

macro_rules! nullable {
    ($variant:ident: $($t:ty),*) => {$(
        impl Nullable for $t {
            fn null() -> Value {
                Value::$variant(None)
            }
        }
    )*};
}
nullable!(Int: i64, i32, u32, u64, usize, bool);
nullable!(Text: str, String);
nullable!(Blob: [u8], Vec<u8>);

impl<T: Nullable + ?Sized> Nullable for &T {
    fn null() -> Value {
        T::null()
    }
}

/// Statement parameters: `params![a, b, c]`.
#[macro_export]
#[doc(hidden)]
macro_rules! db_params {
    ($($p:expr),* $(,)?) => {
        &[$(&$p as &dyn $crate::db::ToValue),*] as &[&dyn $crate::db::ToValue]
    };
}

/// A value read from a column.
pub trait FromValue: Sized {
    /// Converts, or says why not.
    fn from_value(value: &Value) -> Result<Self, DbError>;
}

fn wrong(expected: &'static str, found: &Value) -> DbError {
    DbError::Type(format!("expected {expected}, found {found:?}"))
}

impl FromValue for i64 {
    fn from_value(value: &Value) -> Result<Self, DbError> {
        match value {
            Value::Int(Some(v)) => Ok(*v),
            other => Err(wrong("an integer", other)),
        }
    }
}

impl FromValue for u64 {
    fn from_value(value: &Value) -> Result<Self, DbError> {
        u64::try_from(i64::from_value(value)?).map_err(|_| wrong("a count", value))
    }
}

impl FromValue for u32 {
    fn from_value(value: &Value) -> Result<Self, DbError> {
        u32::try_from(i64::from_value(value)?).map_err(|_| wrong("a small count", value))
    }
}

impl FromValue for bool {
    fn from_value(value: &Value) -> Result<Self, DbError> {
        Ok(i64::from_value(value)? != 0)
    }
}

impl FromValue for String {
    fn from_value(value: &Value) -> Result<Self, DbError> {
        match value {
            Value::Text(Some(v)) => Ok(v.clone()),
            other => Err(wrong("text", other)),
        }
    }
}

impl FromValue for Vec<u8> {
    fn from_value(value: &Value) -> Result<Self, DbError> {
        match value {
            Value::Blob(Some(v)) => Ok(v.clone()),
            other => Err(wrong("bytes", other)),
        }
    }
}

impl<T: FromValue> FromValue for Option<T> {
    fn from_value(value: &Value) -> Result<Self, DbError> {
        match value {
            Value::Int(None) | Value::Text(None) | Value::Blob(None) => Ok(None),
            v => T::from_value(v).map(Some),
        }
    }
}

/// One row of a result.
#[derive(Debug)]
pub struct Row {
    pub(super) values: Vec<Value>,
}

impl Row {
    /// Column `i` (from 0).
    pub fn get<T: FromValue>(&self, i: usize) -> Result<T, DbError> {
        let value = self
            .values
            .get(i)
            .ok_or_else(|| DbError::Type(format!("no column {i}")))?;
        T::from_value(value)
    }
}
