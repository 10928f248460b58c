-- Co-purchase counts behind ListProductCompanions and BuildCrossSellSegment (issue 8): computed
-- from the projection's completed orders in one SQL pass per workspace, kept fresh on a schedule
-- (CDP_SEGMENT_CROSSSELL_INTERVAL_SECONDS) and replaced in one transaction, so that "products
-- bought with X" is an index read instead of a scan of every order.

-- Per workspace and product (sku): companion '' holds the baskets with the product; any other
-- companion the baskets with both (each pair is stored both ways: a lookup by product).
CREATE TABLE co_purchase_counts (
    workspace_id text   NOT NULL,
    sku          text   NOT NULL,
    companion    text   NOT NULL,
    baskets      bigint NOT NULL,
    PRIMARY KEY (workspace_id, sku, companion)
);

CREATE TABLE co_purchase_runs (
    workspace_id text        PRIMARY KEY,
    -- Completed orders with at least one sku.
    baskets      bigint      NOT NULL,
    compute_time timestamptz NOT NULL
);
