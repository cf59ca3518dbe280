//! API lock files: each kind of change that breaks a deployed client is caught, with where and
//! what; additions pass and are recorded.

#![cfg(not(target_arch = "wasm32"))]
// The modules are only described, never served.
#![allow(dead_code)]

use crudp::describe::{Description, LockCheck, LockError, check_lock};
use serde::{Deserialize, Serialize};

/// The API as deployed.
mod v1 {
    use super::*;

    #[derive(Serialize, Deserialize)]
    pub(crate) struct Item {
        pub(crate) id: u64,
        pub(crate) name: String,
    }

    #[derive(Serialize, Deserialize)]
    pub(crate) enum Problem {
        Missing,
    }

    #[crudp::module]
    pub(crate) trait Shop {
        async fn create(&self, ctx: &crudp::Context, name: String) -> Result<Item, Problem>;
        async fn read(&self, ctx: &crudp::Context, id: u64) -> Result<Item, Problem>;
        async fn delete(&self, ctx: &crudp::Context, id: u64) -> Result<(), Problem>;
    }
}

/// Additions only: a field renamed (postcard sends no names), an error variant, an action and
/// a module added.
mod grown {
    use super::*;

    #[derive(Serialize, Deserialize)]
    pub(crate) struct Article {
        pub(crate) id: u64,
        pub(crate) title: String,
    }

    #[derive(Serialize, Deserialize)]
    pub(crate) enum Problem {
        Missing,
        Sold(u32),
    }

    #[crudp::module]
    pub(crate) trait Shop {
        async fn create(&self, ctx: &crudp::Context, name: String) -> Result<Article, Problem>;
        async fn read(&self, ctx: &crudp::Context, id: u64) -> Result<Article, Problem>;
        async fn update(&self, ctx: &crudp::Context, item: Article) -> Result<Article, Problem>;
        async fn delete(&self, ctx: &crudp::Context, id: u64) -> Result<(), Problem>;
    }

    #[crudp::module]
    pub(crate) trait Reviews {
        async fn read(&self, ctx: &crudp::Context, item: u64) -> Result<Vec<String>, ()>;
    }
}

/// Every kind of break at once.
mod broken {
    use super::*;

    #[derive(Serialize, Deserialize)]
    pub(crate) struct Item {
        pub(crate) id: u64,
        pub(crate) name: String,
        pub(crate) price: u32,
    }

    /// A variant inserted before the deployed one: a deployed client's `Missing` would be
    /// read as `Gone`.
    #[derive(Serialize, Deserialize)]
    pub(crate) enum Problem {
        Gone,
        Missing,
    }

    #[crudp::module(id = 99)]
    pub(crate) trait Shop {
        async fn create(
            &self,
            ctx: &crudp::Context,
            name: String,
            price: u32,
        ) -> Result<Item, Problem>;
        async fn read(&self, ctx: &crudp::Context, id: u32) -> Result<Item, Problem>;
    }
}

fn deployed() -> Description {
    Description::of(|d| {
        d.module::<v1::ShopClient>();
    })
    .unwrap()
}

#[test]
fn every_kind_of_break_is_named_with_where_and_what() {
    let now = Description::of(|d| {
        d.module::<broken::ShopClient>();
    })
    .unwrap();
    let breaks: Vec<String> = now
        .breaks(&deployed())
        .iter()
        .map(ToString::to_string)
        .collect();
    let expect = [
        "Shop: the wire ID changed from",
        "Shop::create (arguments): the tuple had 1 fields, has 2",
        "Shop::create (value): in `Item`: the fields were (id, name), are (id, name, price)",
        "Shop::delete: the action was removed",
        "Shop::read (arguments): field 1 of the tuple: was u64, is u32",
        "Shop::read (error): in `Problem`: the variant `Missing` moved from place 0 to 1",
    ];
    for expected in expect {
        assert!(
            breaks.iter().any(|b| b.starts_with(expected)),
            "`{expected}` not among {breaks:#?}"
        );
    }
    let removed = Description::default().breaks(&deployed());
    assert_eq!(removed[0].to_string(), "Shop: the module was removed");
}

#[test]
fn additions_pass() {
    let now = Description::of(|d| {
        d.module::<grown::ShopClient>()
            .module::<grown::ReviewsClient>();
    })
    .unwrap();
    assert_eq!(now.breaks(&deployed()), []);
}

#[test]
fn the_lock_file_is_written_then_kept_then_grown_and_a_break_fails_with_every_reason() {
    let dir = std::env::temp_dir().join(format!("crudp-lock-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let lock = dir.join("crudp-api.lock");
    let _ = std::fs::remove_file(&lock);

    assert_eq!(check_lock(&lock, &deployed()).unwrap(), LockCheck::Written);
    assert_eq!(
        check_lock(&lock, &deployed()).unwrap(),
        LockCheck::Unchanged
    );
    let grown = Description::of(|d| {
        d.module::<grown::ShopClient>();
    })
    .unwrap();
    assert_eq!(check_lock(&lock, &grown).unwrap(), LockCheck::Grew);
    let recorded: Description =
        serde_json::from_str(&std::fs::read_to_string(&lock).unwrap()).unwrap();
    assert!(recorded.modules["Shop"].actions.contains_key("update"));

    let broken = Description::of(|d| {
        d.module::<broken::ShopClient>();
    })
    .unwrap();
    match check_lock(&lock, &broken) {
        Err(error @ LockError::Breaks { .. }) => {
            let message = error.to_string();
            assert!(
                message.contains("would break the clients already deployed"),
                "{message}"
            );
            assert!(
                message.contains("Shop::update: the action was removed"),
                "{message}"
            );
            assert!(message.contains("CRUDP_API_LOCK=update"), "{message}");
        }
        other => panic!("a break passed: {other:?}"),
    }
    std::fs::write(&lock, "not json").unwrap();
    assert!(matches!(
        check_lock(&lock, &grown),
        Err(LockError::File { .. })
    ));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn two_modules_of_one_name_are_an_error_not_one_hiding_the_other() {
    // `v1` and `grown` both define a trait `Shop`, in modules of their own.
    let both = Description::of(|d| {
        d.module::<v1::ShopClient>();
        d.module::<grown::ShopClient>();
    });
    let message = both.unwrap_err().to_string();
    assert!(
        message.contains("two modules are named `Shop`"),
        "{message}"
    );
    assert!(
        message.contains("v1") && message.contains("grown"),
        "{message}"
    );
}
