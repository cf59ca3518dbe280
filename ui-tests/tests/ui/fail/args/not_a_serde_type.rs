pub struct Secret(u64);

#[crudp::module]
pub trait Vault {
    async fn create(&self, ctx: &crudp::Context, secret: Secret) -> Result<u64, ()>;
}

fn main() {}
