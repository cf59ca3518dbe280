//! The macro's overhead: the generated `TodosServer` dispatch against a hand-written `match`
//! that decodes the same arguments and calls the same handler.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use crudp::{Action, ClientId, Context, Module, Outcome, RejectCode, User, server::Dispatch};
use crudp_runtime::BoxFuture;
use example_api::{Todo, TodoError, Todos, TodosClient, TodosServer};

#[derive(Clone)]
struct Noop;

impl Todos for Noop {
    async fn create(&self, _: &Context, title: String) -> Result<Todo, TodoError> {
        Ok(Todo {
            id: 1,
            title,
            done: false,
            by: String::new(),
        })
    }
    async fn read(&self, _: &Context, id: u64) -> Result<Todo, TodoError> {
        Ok(Todo {
            id,
            title: String::new(),
            done: false,
            by: String::new(),
        })
    }
    async fn update(&self, _: &Context, todo: Todo) -> Result<Todo, TodoError> {
        Ok(todo)
    }
    async fn delete(&self, _: &Context, _: u64) -> Result<(), TodoError> {
        Ok(())
    }
}

/// What a user would write by hand instead of the generated dispatch: the same `Dispatch`
/// implementation, with a `match`.
struct ByHand(Noop);

impl Dispatch for ByHand {
    fn descriptor(&self) -> &'static crudp::ModuleDescriptor {
        &<TodosClient as Module>::DESCRIPTOR
    }

    fn dispatch<'a>(
        &'a self,
        ctx: &'a Context,
        action: Action,
        args: &'a [u8],
    ) -> BoxFuture<'a, Outcome> {
        Box::pin(by_hand(&self.0, ctx, action, args))
    }
}

async fn by_hand(store: &Noop, ctx: &Context, action: Action, args: &[u8]) -> Outcome {
    fn encode<T: serde::Serialize, E: serde::Serialize>(result: Result<T, E>) -> Outcome {
        match result {
            Ok(value) => Outcome::Ok(postcard::to_stdvec(&value).unwrap_or_default()),
            Err(error) => Outcome::AppError(postcard::to_stdvec(&error).unwrap_or_default()),
        }
    }
    let bad = |e: postcard::Error| Outcome::Rejected {
        code: RejectCode::BadArguments,
        message: e.to_string(),
    };
    match action {
        Action::Create => match postcard::from_bytes::<(String,)>(args) {
            Ok((title,)) => encode(store.create(ctx, title).await),
            Err(e) => bad(e),
        },
        Action::Read => match postcard::from_bytes::<(u64,)>(args) {
            Ok((id,)) => encode(store.read(ctx, id).await),
            Err(e) => bad(e),
        },
        Action::Update => match postcard::from_bytes::<(Todo,)>(args) {
            Ok((todo,)) => encode(store.update(ctx, todo).await),
            Err(e) => bad(e),
        },
        Action::Delete => match postcard::from_bytes::<(u64,)>(args) {
            Ok((id,)) => encode(store.delete(ctx, id).await),
            Err(e) => bad(e),
        },
    }
}

fn dispatch(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime");
    let ctx = Context::local(User::anonymous(), ClientId(1));
    let args = postcard::to_stdvec(&("milk".to_owned(),)).expect("args encode");
    let generated = TodosServer::new(Noop);
    let hand_written = ByHand(Noop);
    let mut group = c.benchmark_group("dispatch create");
    group.bench_function("generated", |b| {
        b.iter(|| {
            runtime.block_on(generated.dispatch(black_box(&ctx), Action::Create, black_box(&args)))
        })
    });
    group.bench_function("hand-written", |b| {
        b.iter(|| {
            runtime.block_on(hand_written.dispatch(
                black_box(&ctx),
                Action::Create,
                black_box(&args),
            ))
        })
    });
    group.finish();
}

criterion_group!(benches, dispatch);
criterion_main!(benches);
