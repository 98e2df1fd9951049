-- Campaign lifecycle events go through the outbox like coupon events: `campaign.opened` and
-- `campaign.closed` are queued by the relay's announcer once their moment passed, and
-- `campaign.sold-out` by the batch that persists a campaign's last coupon. Each has an event id
-- derived from (campaign, kind), UNIQUE in the outbox, so it is queued once however many
-- consumer pods race for it.
ALTER TABLE outbox
    ALTER COLUMN coupon_id DROP NOT NULL,
    ADD COLUMN campaign_id uuid REFERENCES campaigns (id),
    ADD COLUMN issued      integer,
    ADD COLUMN total_stock integer,
    ADD COLUMN occurred_at timestamptz;

ALTER TABLE outbox DROP CONSTRAINT outbox_kind_check;
ALTER TABLE outbox ADD CONSTRAINT outbox_kind_check
    CHECK (kind IN ('coupon.issued', 'campaign.opened', 'campaign.sold-out', 'campaign.closed'));
-- A coupon event names its coupon; a campaign event its campaign, figures and moment.
ALTER TABLE outbox ADD CONSTRAINT outbox_subject CHECK (
    CASE kind
        WHEN 'coupon.issued' THEN coupon_id IS NOT NULL
        ELSE campaign_id IS NOT NULL AND issued IS NOT NULL AND total_stock IS NOT NULL
             AND occurred_at IS NOT NULL
    END
);

-- Whether the campaign's `opened` / `closed` events are queued. Campaigns that exist when this
-- migration runs count as announced for what already happened to them: no burst of stale events.
ALTER TABLE campaigns
    ADD COLUMN opened_announced boolean NOT NULL DEFAULT false,
    ADD COLUMN closed_announced boolean NOT NULL DEFAULT false;
UPDATE campaigns
SET opened_announced = starts_at <= now(),
    closed_announced = closed_at IS NOT NULL OR ends_at <= now();
CREATE INDEX campaigns_unannounced ON campaigns (starts_at) WHERE NOT closed_announced;

-- The operator list, newest first.
CREATE INDEX campaigns_newest ON campaigns (created_at DESC, id DESC);
-- The operator view counts a campaign's rejections.
CREATE INDEX issuance_rejections_by_campaign ON issuance_rejections (campaign_id);

-- Coupon returns: an operator cancels a coupon (final; its stock does not return to the
-- campaign), and a refunded order hands its coupon back to the user (redeemed -> issued). The
-- last refunded order is kept so the same refund again is recognised.
ALTER TABLE coupons
    ADD COLUMN cancelled_at      timestamptz,
    ADD COLUMN refunded_order_id text CHECK (length(refunded_order_id) BETWEEN 1 AND 128);
ALTER TABLE coupons ADD CONSTRAINT coupons_cancellation
    CHECK ((status = 'cancelled') = (cancelled_at IS NOT NULL));
