//! What each request carries: realistic checkouts, order look-ups, catalogue reads.

use std::sync::Mutex;

use rand::Rng;
use rand::seq::{IndexedRandom, index};
use serde_json::{Value, json};

use super::mix::{Endpoint, Mix};

pub const CARD_OK: &str = "4242424242424242";
/// Insufficient funds: the provider declines, the gateway answers 402 `payment_declined`.
pub const CARD_DECLINED: &str = "4000000000009995";

/// The skus order-api seeds; used when `GET /products` cannot be read at start.
pub const KNOWN_SKUS: [&str; 8] = [
    "COFFEE-250G",
    "GRINDER-HAND",
    "KETTLE-GOOSE",
    "MUG-CERAMIC",
    "FILTER-V60",
    "DRIPPER-V60",
    "SCALE-01",
    "TEA-SENCHA",
];

const FIRST: [&str; 16] = [
    "ada",
    "alan",
    "grace",
    "linus",
    "margaret",
    "ken",
    "barbara",
    "dennis",
    "frances",
    "edsger",
    "radia",
    "tim",
    "hedy",
    "john",
    "katherine",
    "leslie",
];
const LAST: [&str; 12] = [
    "lovelace", "turing", "hopper", "torvalds", "hamilton", "thompson", "liskov", "ritchie",
    "allen", "dijkstra", "perlman", "lamport",
];
const DOMAINS: [&str; 4] = [
    "example.com",
    "example.org",
    "example.net",
    "mail.example.com",
];

/// Order ids the run has created, for `GET /orders/{id}` (the newest `CAP` are kept).
#[derive(Default)]
pub struct KnownOrders {
    ids: Mutex<Vec<String>>,
}

impl KnownOrders {
    const CAP: usize = 4096;

    pub fn add(&self, id: String) {
        if let Ok(mut ids) = self.ids.lock() {
            if ids.len() >= Self::CAP {
                ids.remove(0);
            }
            ids.push(id);
        }
    }

    fn pick(&self, rng: &mut impl Rng) -> Option<String> {
        let ids = self.ids.lock().ok()?;
        ids.choose(rng).cloned()
    }
}

/// One planned request.
#[derive(Clone, Debug)]
pub enum Plan {
    Checkout {
        body: Value,
        declined: bool,
    },
    Products,
    /// `known` is false for a random UUID (no order created yet): a 404 is the expected answer.
    Order {
        id: String,
        known: bool,
    },
}

impl Plan {
    pub fn endpoint(&self) -> Endpoint {
        match self {
            Plan::Checkout { .. } => Endpoint::Checkout,
            Plan::Products => Endpoint::Products,
            Plan::Order { .. } => Endpoint::Order,
        }
    }

    /// The status this request is meant to get when the fleet is healthy.
    pub fn expected_status(&self) -> u16 {
        match self {
            Plan::Checkout {
                declined: false, ..
            } => 201,
            Plan::Checkout { declined: true, .. } => 402,
            Plan::Products | Plan::Order { known: true, .. } => 200,
            Plan::Order { known: false, .. } => 404,
        }
    }
}

pub struct Planner {
    pub mix: Mix,
    pub skus: Vec<String>,
    pub decline_rate: f64,
}

impl Planner {
    pub fn plan(&self, rng: &mut impl Rng, orders: &KnownOrders) -> Plan {
        match self.mix.pick(rng) {
            Endpoint::Checkout => {
                let declined = rng.random_bool(self.decline_rate);
                Plan::Checkout {
                    body: self.checkout_body(rng, declined),
                    declined,
                }
            }
            Endpoint::Products => Plan::Products,
            Endpoint::Order => match orders.pick(rng) {
                Some(id) => Plan::Order { id, known: true },
                None => {
                    let bytes: [u8; 16] = rng.random();
                    Plan::Order {
                        id: uuid::Builder::from_random_bytes(bytes)
                            .into_uuid()
                            .to_string(),
                        known: false,
                    }
                }
            },
        }
    }

    /// 1–4 distinct skus, quantities 1–3, a random customer, the good card or the declined one.
    pub fn checkout_body(&self, rng: &mut impl Rng, declined: bool) -> Value {
        let lines = rng.random_range(1..=4usize).min(self.skus.len());
        let items: Vec<Value> = index::sample(rng, self.skus.len(), lines)
            .into_iter()
            .map(|i| json!({"sku": self.skus[i], "quantity": rng.random_range(1..=3)}))
            .collect();
        json!({
            "customer_email": random_email(rng),
            "items": items,
            "card_number": if declined { CARD_DECLINED } else { CARD_OK },
        })
    }
}

pub fn random_email(rng: &mut impl Rng) -> String {
    let first = FIRST.choose(rng).copied().unwrap_or("ada");
    let last = LAST.choose(rng).copied().unwrap_or("lovelace");
    let domain = DOMAINS.choose(rng).copied().unwrap_or("example.com");
    match rng.random_range(0..3) {
        0 => format!("{first}.{last}@{domain}"),
        1 => format!("{first}{}@{domain}", rng.random_range(1..1000)),
        _ => format!("{}{last}+shop@{domain}", &first[..1]),
    }
}

/// The skus in a `GET /products` answer.
pub fn skus_from_products(body: &Value) -> Vec<String> {
    body["products"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["sku"].as_str().map(str::to_owned))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    fn planner(mix: &str) -> Planner {
        Planner {
            mix: mix.parse().unwrap(),
            skus: KNOWN_SKUS.iter().map(|s| s.to_string()).collect(),
            decline_rate: 0.5,
        }
    }

    #[test]
    fn checkout_bodies_are_valid_orders() {
        let p = planner("checkout=1");
        let mut rng = StdRng::seed_from_u64(1);
        let mut declined = 0;
        for _ in 0..500 {
            let Plan::Checkout { body, declined: d } = p.plan(&mut rng, &KnownOrders::default())
            else {
                panic!("checkout only")
            };
            let items = body["items"].as_array().unwrap();
            assert!((1..=4).contains(&items.len()));
            let mut skus: Vec<_> = items.iter().map(|i| i["sku"].as_str().unwrap()).collect();
            assert!(skus.iter().all(|s| KNOWN_SKUS.contains(s)));
            skus.dedup();
            assert_eq!(skus.len(), items.len(), "distinct skus");
            assert!(
                items
                    .iter()
                    .all(|i| (1..=3).contains(&i["quantity"].as_i64().unwrap()))
            );
            let email = body["customer_email"].as_str().unwrap();
            assert!(email.contains('@') && email.contains('.'), "{email}");
            let card = body["card_number"].as_str().unwrap();
            assert_eq!(card, if d { CARD_DECLINED } else { CARD_OK });
            declined += usize::from(d);
        }
        assert!((150..350).contains(&declined), "{declined}");
    }

    #[test]
    fn order_lookups_use_known_orders_else_a_random_uuid() {
        let p = planner("order=1");
        let mut rng = StdRng::seed_from_u64(2);
        let orders = KnownOrders::default();
        let Plan::Order { id, known } = p.plan(&mut rng, &orders) else {
            panic!()
        };
        assert!(!known);
        assert!(uuid::Uuid::parse_str(&id).is_ok());
        orders.add("5b6f8f2e-0000-4000-8000-000000000001".into());
        let plan = p.plan(&mut rng, &orders);
        assert_eq!(plan.expected_status(), 200);
        assert!(matches!(plan, Plan::Order { id, known: true } if id.ends_with("0001")));
    }

    #[test]
    fn same_seed_same_plans() {
        let p = planner("checkout=70,products=20,order=10");
        let run = |seed| {
            let mut rng = StdRng::seed_from_u64(seed);
            (0..50)
                .map(|_| format!("{:?}", p.plan(&mut rng, &KnownOrders::default())))
                .collect::<Vec<_>>()
        };
        assert_eq!(run(9), run(9));
        assert_ne!(run(9), run(10));
    }
}
