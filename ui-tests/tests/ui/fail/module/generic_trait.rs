#[crudp::module]
pub trait Store<T> {
    async fn read(&self, ctx: &crudp::Context, id: u64) -> Result<String, ()>;
}

fn main() {}
