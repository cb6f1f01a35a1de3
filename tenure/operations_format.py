"""The operational level's two tables, named once: current customers (to score) and contact feedback events.

``tenure score`` reads a customer table and writes a score table; ``tenure alarm`` reads
feedback events; the engine writes feedback events in the same format (``tenure simulate
--feedback``). The full formats are in ``docs/operations.md``.
"""

from __future__ import annotations

from tenure.panel_format import NPS_SCALE, SCORE_COLUMNS, SCORE_SCALE

# -- current customers (`tenure score`) ------------------------------------------------

#: Columns every customer table must have: the id, the latest answer to each survey construct (1–5),
#: the tenure in months (months since the customer's first month, 0 in it, as the panel's tenure) and
#: the products held (at least 1).
CUSTOMER_COLUMNS = ("customer_id", *SCORE_COLUMNS, "tenure", "products")
#: Optional columns: the segment label (as in the panel the fit was made on) and the margin per month
#: (currency per customer-month; without it ``--margin`` gives one margin for all).
CUSTOMER_OPTIONAL_COLUMNS = ("segment", "margin")

#: Columns of the score table, in order (``*_lower``/``*_upper``: the equal-tailed posterior interval).
#: churn probability per month; remaining margin and value at risk in the currency of the margin,
#: discounted to the current month, over the horizon; cross-sales in products over the horizon.
SCORE_QUANTITIES = ("churn_probability_monthly", "remaining_margin", "value_at_risk")
CROSS_SELL_QUANTITY = "cross_sales"
#: The call-list rank column: 1 is the customer with the highest expected value at risk.
RANK_COLUMN = "call_rank"

# -- contact feedback events (`tenure alarm`) --------------------------------------------

#: Columns every feedback event must have: the customer, when (UTC timestamp), the touchpoint
#: (a label such as ``call_centre``) and at least one score column.
FEEDBACK_COLUMNS = ("customer_id", "timestamp", "touchpoint")
#: Score columns an event may carry (null when not asked): the 0–10 recommendation question and the
#: 1–5 satisfaction with the contact.
FEEDBACK_SCORE_COLUMNS = ("nps", "satisfaction")
#: Scale of each feedback score.
FEEDBACK_SCALES = {"nps": NPS_SCALE, "satisfaction": SCORE_SCALE}
#: Optional columns: a complaint flag (true/false) and the customer's segment.
FEEDBACK_OPTIONAL_COLUMNS = ("complaint", "segment")
