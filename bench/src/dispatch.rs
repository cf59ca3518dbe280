//! The macro's overhead: the generated `TodosServer` dispatch against a hand-written `match`
//! that decodes the same arguments and calls the same handler, interleaved in one loop (a
//! block of one, then a block of the other, again and again), so that neither gets a quieter
//! moment of the machine or a luckier code layout to itself.

use std::{hint::black_box, time::Instant};

use crudp::{
    Action, ClientId, Context, Module, Outcome, RejectCode, User,
    server::{BoxFuture, Dispatch},
};
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
            Ok(value) => Outcome::Ok(postcard::to_stdvec(&value).unwrap_or_default().into()),
            Err(error) => Outcome::AppError(postcard::to_stdvec(&error).unwrap_or_default().into()),
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

/// Nanoseconds per dispatch of one `create`, generated and hand-written: the medians over
/// `rounds` rounds of `block` dispatches each way.
pub(crate) fn measure(rounds: usize, block: usize) -> (f64, f64) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime");
    let ctx = Context::local(User::anonymous(), ClientId(1));
    let args = postcard::to_stdvec(&("milk".to_owned(),)).expect("args encode");
    let generated = TodosServer::new(Noop);
    let hand_written = ByHand(Noop);
    let time = |module: &dyn Dispatch| {
        let started = Instant::now();
        for _ in 0..block {
            black_box(runtime.block_on(module.dispatch(
                black_box(&ctx),
                Action::Create,
                black_box(&args),
            )));
        }
        started.elapsed().as_nanos() as f64 / block as f64
    };
    // Warm both up before timing.
    time(&generated);
    time(&hand_written);
    let (mut a, mut b) = (Vec::with_capacity(rounds), Vec::with_capacity(rounds));
    for round in 0..rounds {
        // Which goes first alternates too.
        if round % 2 == 0 {
            a.push(time(&generated));
            b.push(time(&hand_written));
        } else {
            b.push(time(&hand_written));
            a.push(time(&generated));
        }
    }
    (crate::median(&a), crate::median(&b))
}
