"""meshpkt.plot: figures drawn from the analysis tables and the lab model (matplotlib object API).

- :func:`sequence_diagram` (analysis, conn_id) -> Figure: one connection, hop by hop
- :func:`topology_diagram` (lab status dict) -> Figure: nodes, namespaces, interfaces, links, VXLAN
- :func:`balance_plot` (analysis) -> Figure: requests per backend per entry node, and over time

Every function returns a :class:`matplotlib.figure.Figure` that is not registered with pyplot (an
Agg canvas is attached): save it with ``fig.savefig("x.png")``, or in Jupyter run
``%matplotlib inline`` once and evaluate it. matplotlib is imported only when a figure is drawn.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from meshpkt.errors import UsageError
from meshpkt.plot.balance import balance_plot
from meshpkt.plot.sequence import sequence_diagram, sequence_model
from meshpkt.plot.topology import topology_diagram

if TYPE_CHECKING:
    from meshpkt.flows import Analysis

__all__ = ["balance_plot", "first_connection", "sequence_diagram", "sequence_model", "topology_diagram"]


def first_connection(analysis: Analysis) -> int:
    """Id of the connection that started first (UsageError when there is none)."""
    c = analysis.connections
    if c is None or len(c) == 0:
        raise UsageError("nothing to draw: no connection was found in the captures")
    return int(c.sort_values(["first_ts_ns", "conn_id"], kind="stable").iloc[0]["conn_id"])
