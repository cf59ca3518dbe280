//! Argument types named `S`, `Context` behind `&'_`, a trait declared by a `macro_rules!`.

use crudp::{Context, Module};

pub struct S;

macro_rules! module_of {
    ($name:ident, $arg:ty, $result:ty) => {
        #[crudp::module]
        pub trait $name {
            async fn read(&self, ctx: &'_ Context, s: $arg) -> $result;
        }
    };
}

module_of!(Shapes, u8, Result<u8, ()>);

#[crudp::module]
pub trait Other {
    async fn delete(&self, ctx: &Context, args: u8, action: u8, descriptor: u8) -> Result<(), ()>;
}

/// A raw parameter named as the broadcast's own: `r#api` binds `api`.
#[crudp::module]
pub trait Raw {
    async fn delete(&self, ctx: &Context, r#api: u8, r#target: u8) -> Result<(), ()>;
}

struct Impl;

impl Shapes for Impl {
    async fn read(&self, _: &Context, s: u8) -> Result<u8, ()> {
        Ok(s)
    }
}

impl Raw for Impl {
    async fn delete(&self, _: &Context, _: u8, _: u8) -> Result<(), ()> {
        Ok(())
    }
}

impl Other for Impl {
    async fn delete(&self, _: &Context, _: u8, _: u8, _: u8) -> Result<(), ()> {
        Ok(())
    }
}

fn main() {
    let _ = S;
    let _ = ShapesServer::new(Impl);
    let _ = OtherServer::new(Impl);
    let _ = RawServer::new(Impl);
    assert_eq!(ShapesClient::DESCRIPTOR.actions, &[crudp::Action::Read]);
}
