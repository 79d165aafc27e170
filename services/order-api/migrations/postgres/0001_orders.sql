CREATE TABLE products (
    sku         TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    price_cents BIGINT NOT NULL CHECK (price_cents > 0),
    currency    TEXT NOT NULL DEFAULT 'USD'
);

CREATE TABLE orders (
    id             TEXT PRIMARY KEY,
    customer_email TEXT NOT NULL,
    status         TEXT NOT NULL CHECK (status IN ('pending', 'paid', 'payment_failed')),
    total_cents    BIGINT NOT NULL CHECK (total_cents > 0),
    currency       TEXT NOT NULL,
    payment_id     TEXT,
    failure_reason TEXT,
    created_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at     TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE order_items (
    order_id         TEXT NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    line_no          INTEGER NOT NULL,
    sku              TEXT NOT NULL REFERENCES products (sku),
    name             TEXT NOT NULL,
    quantity         INTEGER NOT NULL CHECK (quantity > 0),
    unit_price_cents BIGINT NOT NULL,
    PRIMARY KEY (order_id, line_no)
);

CREATE INDEX orders_created_at ON orders (created_at);

INSERT INTO products (sku, name, price_cents) VALUES
    ('COFFEE-250G',  'Single-origin coffee beans, 250 g', 1450),
    ('GRINDER-HAND', 'Hand coffee grinder',               4900),
    ('KETTLE-GOOSE', 'Gooseneck kettle',                  3900),
    ('MUG-CERAMIC',  'Ceramic mug',                       1200),
    ('FILTER-V60',   'V60 paper filters, 100 pack',        650),
    ('DRIPPER-V60',  'V60 dripper',                       2300),
    ('SCALE-01',     'Brewing scale',                     2900),
    ('TEA-SENCHA',   'Sencha green tea, 100 g',            990);
