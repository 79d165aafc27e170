//! The fleet's layout, written down once: every component, its listeners and default ports,
//! how it is probed, how its callers find it and what it needs. `fleet up`, `fleet run`,
//! `fleet scenario`, the e2e harness and the deploy drift test all read this table.

/// How a component is spoken to. gRPC servers also answer the HTTP probes on the same port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    Http,
    Grpc,
}

impl Protocol {
    /// The scheme people see in the summary (`grpc://` for gRPC servers).
    pub fn scheme(self) -> &'static str {
        match self {
            Protocol::Http => "http",
            Protocol::Grpc => "grpc",
        }
    }
}

/// One listening socket of a component.
#[derive(Clone, Copy, Debug)]
pub struct Listener {
    /// The label in the component's `fleet:listening LABEL ADDR` line.
    pub label: &'static str,
    pub default_port: u16,
    /// The variable the component reads its `host:port` from.
    pub listen_env: &'static str,
    /// The `fleet up` flag that sets the port (`--gateway-port`).
    pub port_flag: &'static str,
}

/// Where `fleet scenario` and `fleet quiz` find a component's `/admin/faults`.
#[derive(Clone, Copy, Debug)]
pub struct AdminTarget {
    /// `--gateway`, `--order-api`, …
    pub flag: &'static str,
    /// `FLEET_GATEWAY_URL`, …
    pub env: &'static str,
    /// The fault points the component declares (its crate's `server::FAULT_POINTS`).
    pub fault_points: &'static [fleet_faults::FaultPoint],
}

/// One component of the fleet.
#[derive(Clone, Copy, Debug)]
pub struct Component {
    /// The name used everywhere: `fleet run NAME`, `fleet:ready NAME`, `service.name`.
    pub name: &'static str,
    /// The first listener is the one callers use and the one `fleet:ready` names.
    pub listeners: &'static [Listener],
    pub protocol: Protocol,
    /// HTTP path that answers 200 once the component can serve.
    pub ready_path: &'static str,
    /// The variable its callers are given (an `http://host:port` URL) to find it.
    pub caller_env: &'static str,
    /// Components that must be running first (and are stopped after it).
    pub depends_on: &'static [&'static str],
    /// Exports spans (gets the OTLP endpoint and `OTEL_SERVICE_NAME`).
    pub traced: bool,
    /// Its `Dockerfile` build target (and `make` image name).
    pub image: &'static str,
    pub admin: Option<AdminTarget>,
    /// What the summary says about it.
    pub about: &'static str,
}

impl Component {
    pub fn main_listener(&self) -> &'static Listener {
        &self.listeners[0]
    }

    pub fn default_port(&self) -> u16 {
        self.main_listener().default_port
    }

    pub fn listener(&self, label: &str) -> Option<&'static Listener> {
        self.listeners.iter().find(|l| l.label == label)
    }
}

/// The trace desk; traced components depend on it (it starts first and stops last) unless
/// `OTEL_EXPORTER_OTLP_ENDPOINT` points elsewhere, in which case it is not started at all.
pub const DESK: &str = "desk";
pub const PROVIDER: &str = "payment-provider";
pub const PAYMENT_API: &str = "payment-api";
pub const NOTIFICATION: &str = "notification";
pub const ORDER_API: &str = "order-api";
pub const GATEWAY: &str = "api-gateway";

/// The desk's listeners, by label.
pub const DESK_API: &str = "api";
pub const DESK_OTLP_GRPC: &str = "otlp-grpc";
pub const DESK_OTLP_HTTP: &str = "otlp-http";

const fn one(label: &'static str, default_port: u16, port_flag: &'static str) -> [Listener; 1] {
    [Listener {
        label,
        default_port,
        listen_env: "LISTEN_ADDR",
        port_flag,
    }]
}

pub const COMPONENTS: &[Component] = &[
    Component {
        name: DESK,
        listeners: &[
            Listener {
                label: DESK_API,
                default_port: 3200,
                listen_env: "DESK_API_ADDR",
                port_flag: "desk-port",
            },
            Listener {
                label: DESK_OTLP_GRPC,
                default_port: 4317,
                listen_env: "DESK_OTLP_GRPC_ADDR",
                port_flag: "otlp-grpc-port",
            },
            Listener {
                label: DESK_OTLP_HTTP,
                default_port: 4318,
                listen_env: "DESK_OTLP_HTTP_ADDR",
                port_flag: "otlp-http-port",
            },
        ],
        protocol: Protocol::Http,
        ready_path: "/ready",
        caller_env: "OTEL_EXPORTER_OTLP_ENDPOINT",
        depends_on: &[],
        traced: false,
        image: "trace-desk",
        admin: None,
        about: "web UI and Tempo API; traces arrive over OTLP",
    },
    Component {
        name: PROVIDER,
        listeners: &one(PROVIDER, 8090, "provider-port"),
        protocol: Protocol::Http,
        ready_path: "/readyz",
        caller_env: "PAYMENT_PROVIDER_URL",
        depends_on: &[],
        traced: false,
        image: "payment-provider",
        admin: Some(AdminTarget {
            flag: "provider",
            env: "FLEET_PROVIDER_URL",
            fault_points: payment_provider::server::FAULT_POINTS,
        }),
        about: "the external provider (sends no telemetry)",
    },
    Component {
        name: PAYMENT_API,
        listeners: &one(PAYMENT_API, 50051, "payment-api-port"),
        protocol: Protocol::Grpc,
        ready_path: "/readyz",
        caller_env: "PAYMENT_API_ADDR",
        depends_on: &[DESK, PROVIDER],
        traced: true,
        image: "payment-api",
        admin: Some(AdminTarget {
            flag: "payment-api",
            env: "FLEET_PAYMENT_API_URL",
            fault_points: payment_api::server::FAULT_POINTS,
        }),
        about: "payment.v1.PaymentService",
    },
    Component {
        name: NOTIFICATION,
        listeners: &one(NOTIFICATION, 50052, "notification-port"),
        protocol: Protocol::Grpc,
        ready_path: "/readyz",
        caller_env: "NOTIFICATION_ADDR",
        depends_on: &[DESK],
        traced: true,
        image: "notification",
        admin: Some(AdminTarget {
            flag: "notification",
            env: "FLEET_NOTIFICATION_URL",
            fault_points: notification::server::FAULT_POINTS,
        }),
        about: "notification.v1.NotificationService, GET /outbox",
    },
    Component {
        name: ORDER_API,
        listeners: &one(ORDER_API, 8081, "order-api-port"),
        protocol: Protocol::Http,
        ready_path: "/readyz",
        caller_env: "ORDER_API_URL",
        depends_on: &[DESK, PAYMENT_API],
        traced: true,
        image: "order-api",
        admin: Some(AdminTarget {
            flag: "order-api",
            env: "FLEET_ORDER_API_URL",
            fault_points: order_api::server::FAULT_POINTS,
        }),
        about: "",
    },
    Component {
        name: GATEWAY,
        listeners: &one(GATEWAY, 8080, "gateway-port"),
        protocol: Protocol::Http,
        ready_path: "/readyz",
        caller_env: "FLEET_GATEWAY_URL",
        depends_on: &[DESK, ORDER_API, NOTIFICATION],
        traced: true,
        image: "api-gateway",
        admin: Some(AdminTarget {
            flag: "gateway",
            env: "FLEET_GATEWAY_URL",
            fault_points: api_gateway::server::FAULT_POINTS,
        }),
        about: "POST /checkout, GET /orders/{id}, GET /products",
    },
];

/// The component named `name`.
pub fn component(name: &str) -> Option<&'static Component> {
    COMPONENTS.iter().find(|c| c.name == name)
}

/// Every component's name, in table order.
pub fn names() -> Vec<&'static str> {
    COMPONENTS.iter().map(|c| c.name).collect()
}

/// Components that export spans (the services; not the desk, not the provider).
pub fn traced() -> impl Iterator<Item = &'static Component> {
    COMPONENTS.iter().filter(|c| c.traced)
}

/// Components with a fault admin API (`fleet scenario` talks to each).
pub fn admin_targets() -> impl Iterator<Item = (&'static Component, AdminTarget)> {
    COMPONENTS
        .iter()
        .filter_map(|c| c.admin.map(|admin| (c, admin)))
}

/// The fleet as a mermaid flowchart, drawn from [`COMPONENTS`]: docs/architecture.md embeds it
/// and a test keeps the two the same.
pub fn mermaid() -> String {
    let id = |name: &str| name.replace('-', "_");
    let mut out =
        String::from("flowchart LR\n    learner([learner / fleet load]) --> api_gateway\n");
    for c in COMPONENTS {
        let ports: Vec<String> = c
            .listeners
            .iter()
            .map(|l| format!(":{}", l.default_port))
            .collect();
        out.push_str(&format!(
            "    {}[\"{}<br/>{} {}\"]\n",
            id(c.name),
            c.name,
            c.protocol.scheme(),
            ports.join(" ")
        ));
    }
    for c in COMPONENTS {
        for d in c.depends_on {
            if *d == DESK {
                out.push_str(&format!("    {} -. OTLP .-> {}\n", id(c.name), id(d)));
            } else {
                let via = component(d).map_or("", |d| d.protocol.scheme());
                out.push_str(&format!("    {} -- {via} --> {}\n", id(c.name), id(d)));
            }
        }
    }
    out
}

/// Every fault point of the fleet with the component that owns it, in table order: the
/// catalogue `fleet scenario` and `fleet quiz` arm from, collected from the services.
pub fn fault_points() -> impl Iterator<Item = (&'static Component, fleet_faults::FaultPoint)> {
    admin_targets().flat_map(|(c, admin)| admin.fault_points.iter().map(move |p| (c, *p)))
}

/// The component that owns the fault point `name`.
pub fn fault_point_owner(name: &str) -> Option<&'static Component> {
    fault_points().find(|(_, p)| p.name == name).map(|(c, _)| c)
}

/// Start order: every component after what it depends on, ties in table order. Stop order is
/// the reverse. `without` leaves components out (the desk when telemetry goes elsewhere).
pub fn start_order(without: &[&str]) -> Vec<&'static Component> {
    let wanted: Vec<&'static Component> = COMPONENTS
        .iter()
        .filter(|c| !without.contains(&c.name))
        .collect();
    let mut order: Vec<&'static Component> = Vec::with_capacity(wanted.len());
    // Kahn's algorithm, picking the first ready component in table order each round. The
    // table is acyclic (a test says so), so every round places one.
    while order.len() < wanted.len() {
        let next = wanted.iter().find(|c| {
            !order.iter().any(|o| o.name == c.name)
                && c.depends_on
                    .iter()
                    .all(|d| without.contains(d) || order.iter().any(|o| o.name == *d))
        });
        match next {
            Some(c) => order.push(c),
            None => break,
        }
    }
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fault_points_are_collected_from_the_services_and_owned_once() {
        let points: Vec<_> = fault_points().map(|(c, p)| (c.name, p.name)).collect();
        let mut names: Vec<_> = points.iter().map(|(_, p)| *p).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(
            names.len(),
            points.len(),
            "a point has two owners: {points:?}"
        );
        assert!(points.contains(&(ORDER_API, "order.db")), "{points:?}");
        assert!(
            points.contains(&(PROVIDER, "payment.provider")),
            "{points:?}"
        );
        assert_eq!(
            fault_point_owner("gateway.orders").map(|c| c.name),
            Some(GATEWAY)
        );
        assert!(fault_point_owner("order.dbb").is_none());
        assert!(crate::check_fleet_faults("order.db:latency=1s;payment.retry:mode=retry").is_ok());
        let typo = crate::check_fleet_faults("order.dbb:latency=1s").unwrap_err();
        assert!(format!("{typo:#}").contains("\"order.dbb\""), "{typo:#}");
        assert!(crate::check_fleet_faults("").is_ok());
    }

    #[test]
    fn names_are_unique_and_dependencies_exist() {
        let mut names = names();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), COMPONENTS.len());
        for c in COMPONENTS {
            assert!(!c.listeners.is_empty(), "{}", c.name);
            for d in c.depends_on {
                assert!(component(d).is_some(), "{} depends on unknown {d}", c.name);
            }
        }
        let mut ports: Vec<u16> = COMPONENTS
            .iter()
            .flat_map(|c| c.listeners.iter().map(|l| l.default_port))
            .collect();
        ports.sort_unstable();
        ports.dedup();
        assert_eq!(
            ports.len(),
            COMPONENTS.iter().map(|c| c.listeners.len()).sum::<usize>()
        );
    }

    #[test]
    fn start_order_puts_dependencies_first() {
        let order: Vec<&str> = start_order(&[]).iter().map(|c| c.name).collect();
        assert_eq!(
            order,
            [
                DESK,
                PROVIDER,
                PAYMENT_API,
                NOTIFICATION,
                ORDER_API,
                GATEWAY
            ]
        );
        let without_desk: Vec<&str> = start_order(&[DESK]).iter().map(|c| c.name).collect();
        assert_eq!(without_desk.len(), COMPONENTS.len() - 1);
        assert_eq!(without_desk.last(), Some(&GATEWAY));
    }

    #[test]
    fn traced_services_are_the_four() {
        let names: Vec<&str> = traced().map(|c| c.name).collect();
        assert_eq!(names, [PAYMENT_API, NOTIFICATION, ORDER_API, GATEWAY]);
        for c in traced() {
            assert!(
                c.depends_on.contains(&DESK),
                "{} sends spans to the desk",
                c.name
            );
        }
    }
}
