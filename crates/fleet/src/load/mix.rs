//! The traffic mix: `checkout=70,products=20,order=10`.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

/// The three gateway calls `fleet load` makes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Endpoint {
    Checkout,
    Products,
    Order,
}

impl Endpoint {
    pub const ALL: [Endpoint; 3] = [Endpoint::Checkout, Endpoint::Products, Endpoint::Order];

    /// The mix name (`checkout`, `products`, `order`).
    pub fn key(self) -> &'static str {
        match self {
            Endpoint::Checkout => "checkout",
            Endpoint::Products => "products",
            Endpoint::Order => "order",
        }
    }

    /// The gateway's root span name for this call (method and route).
    pub fn route(self) -> &'static str {
        match self {
            Endpoint::Checkout => "POST /checkout",
            Endpoint::Products => "GET /products",
            Endpoint::Order => "GET /orders/{id}",
        }
    }

    pub fn index(self) -> usize {
        match self {
            Endpoint::Checkout => 0,
            Endpoint::Products => 1,
            Endpoint::Order => 2,
        }
    }
}

/// Integer weights per endpoint; an endpoint left out of the spec has weight 0.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mix {
    weights: [u32; 3],
}

impl Default for Mix {
    fn default() -> Self {
        Mix {
            weights: [70, 20, 10],
        }
    }
}

impl Mix {
    pub fn weight(&self, endpoint: Endpoint) -> u32 {
        self.weights[endpoint.index()]
    }

    fn total(&self) -> u64 {
        self.weights.iter().map(|w| u64::from(*w)).sum()
    }

    /// Maps a uniform draw in `[0, total)` to an endpoint (cumulative weights, in `ALL` order).
    pub fn pick_with(&self, draw: u64) -> Endpoint {
        let mut acc = 0u64;
        for endpoint in Endpoint::ALL {
            acc += u64::from(self.weight(endpoint));
            if draw < acc {
                return endpoint;
            }
        }
        // Unreachable for draw < total; the last endpoint with weight keeps it total anyway.
        Endpoint::ALL
            .into_iter()
            .rev()
            .find(|e| self.weight(*e) > 0)
            .unwrap_or(Endpoint::Checkout)
    }

    pub fn pick(&self, rng: &mut impl rand::Rng) -> Endpoint {
        self.pick_with(rng.random_range(0..self.total()))
    }
}

impl FromStr for Mix {
    type Err = String;

    fn from_str(spec: &str) -> Result<Self, Self::Err> {
        let mut weights = [0u32; 3];
        let mut seen = [false; 3];
        for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, weight) = part
                .split_once('=')
                .ok_or_else(|| format!("{part:?}: expected NAME=WEIGHT, e.g. checkout=70"))?;
            let endpoint = match name.trim() {
                "checkout" => Endpoint::Checkout,
                "products" => Endpoint::Products,
                "order" | "orders" => Endpoint::Order,
                other => {
                    return Err(format!(
                        "unknown endpoint {other:?}: use checkout, products or order"
                    ));
                }
            };
            let weight: u32 = weight.trim().parse().map_err(|_| {
                format!("{part:?}: the weight must be a whole number ≥ 0, got {weight:?}")
            })?;
            if std::mem::replace(&mut seen[endpoint.index()], true) {
                return Err(format!("{} appears twice", endpoint.key()));
            }
            weights[endpoint.index()] = weight;
        }
        if weights.iter().all(|w| *w == 0) {
            return Err("the mix needs at least one weight above 0".into());
        }
        Ok(Mix { weights })
    }
}

impl fmt::Display for Mix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = Endpoint::ALL
            .iter()
            .filter(|e| self.weight(**e) > 0)
            .map(|e| format!("{}={}", e.key(), self.weight(*e)))
            .collect();
        f.write_str(&parts.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn parses_the_default_spec() {
        let mix: Mix = "checkout=70,products=20,order=10".parse().unwrap();
        assert_eq!(mix, Mix::default());
        assert_eq!(mix.to_string(), "checkout=70,products=20,order=10");
    }

    #[test]
    fn missing_endpoints_weigh_zero_and_spaces_are_fine() {
        let mix: Mix = " checkout = 1 , order=3 ".parse().unwrap();
        assert_eq!(mix.weight(Endpoint::Checkout), 1);
        assert_eq!(mix.weight(Endpoint::Products), 0);
        assert_eq!(mix.weight(Endpoint::Order), 3);
        assert_eq!(mix.to_string(), "checkout=1,order=3");
    }

    #[test]
    fn rejects_bad_specs() {
        for bad in [
            "",
            "checkout",
            "checkout=x",
            "checkout=-1",
            "checkout=1.5",
            "refund=10",
            "checkout=0,products=0",
            "checkout=1,checkout=2",
        ] {
            assert!(bad.parse::<Mix>().is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn picks_follow_cumulative_weights() {
        let mix: Mix = "checkout=2,products=0,order=1".parse().unwrap();
        assert_eq!(mix.pick_with(0), Endpoint::Checkout);
        assert_eq!(mix.pick_with(1), Endpoint::Checkout);
        assert_eq!(mix.pick_with(2), Endpoint::Order);
    }

    #[test]
    fn random_picks_approach_the_weights() {
        let mix = Mix::default();
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let mut counts = [0u32; 3];
        for _ in 0..10_000 {
            counts[mix.pick(&mut rng).index()] += 1;
        }
        assert!((6_700..7_300).contains(&counts[0]), "{counts:?}");
        assert!((1_700..2_300).contains(&counts[1]), "{counts:?}");
        assert!((800..1_200).contains(&counts[2]), "{counts:?}");
    }
}
