"""The Staffetta Grafana dashboard, as code (grafana-foundation-sdk).

    .venv/bin/python -m deploy.observability.dashboard          # rewrite the JSON the chart ships
    .venv/bin/python -m deploy.observability.dashboard --check  # exit 1 if it is out of date

The panels and their queries are in ``panels.py``; this module lays them out.

Every query filters on ``namespace=~"$namespace", instance=~"$instance"``. Both
variables default to "All" = ``.*``, which also matches a series that has no
such label (a local Prometheus scraping static targets), so the same JSON
works in a cluster and on a laptop. Queue gauges come from the router only, so
they are aggregated with ``max`` (a second router would export the same values).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from grafana_foundation_sdk.builders.common import VizLegendOptions, VizTooltipOptions
from grafana_foundation_sdk.builders.dashboard import (
    Dashboard,
    DatasourceVariable,
    QueryVariable,
    Row,
)
from grafana_foundation_sdk.builders.prometheus import Dataquery
from grafana_foundation_sdk.builders.timeseries import Panel as Timeseries
from grafana_foundation_sdk.cog.builder import Builder
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.common import (
    LegendDisplayMode,
    LegendPlacement,
    SortOrder,
    TooltipDisplayMode,
)
from grafana_foundation_sdk.models.dashboard import (
    DashboardCursorSync,
    DataSourceRef,
    VariableModel,
    VariableOption,
    VariableRefresh,
    VariableSort,
)

from deploy.observability.panels import PanelSpec, rows

OUTPUT = (
    Path(__file__).resolve().parents[1] / "helm" / "staffetta" / "files" / "dashboards"
) / "staffetta.json"

DATASOURCE = DataSourceRef(type_val="prometheus", uid="${datasource}")
COMMAND = ".venv/bin/python -m deploy.observability.dashboard"
ALL = VariableOption(selected=True, text="All", value="$__all")


def query_variable(name: str, label: str, query: str) -> QueryVariable:
    """A multi-value variable over ``label_values(...)``, "All" (any value) by default."""
    return (
        QueryVariable(name)
        .label(label)
        .datasource(DATASOURCE)
        .query(query)
        .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(VariableSort.ALPHABETICAL_ASC)
        .include_all(True)
        .all_value(".*")
        .multi(True)
        .current(ALL)
    )


def variables() -> list[Builder[VariableModel]]:
    return [
        DatasourceVariable("datasource").label("Data source").type("prometheus"),
        query_variable(
            "namespace", "Namespace", "label_values(staffetta_ingress_sessions_total, namespace)"
        ),
        query_variable(
            "instance",
            "Instance",
            'label_values({__name__=~"staffetta_.+", namespace=~"$namespace"}, instance)',
        ),
    ]


def panel(spec: PanelSpec, panel_id: int) -> Timeseries:
    built = (
        Timeseries()
        .id(panel_id)
        .title(spec.title)
        .description(spec.description)
        .datasource(DATASOURCE)
        .unit(spec.unit)
        .min(0)
        .span(spec.width)
        .height(8)
        .fill_opacity(10)
        .legend(
            VizLegendOptions()
            .display_mode(LegendDisplayMode.LIST)
            .placement(LegendPlacement.BOTTOM)
            .show_legend(True)
        )
        .tooltip(VizTooltipOptions().mode(TooltipDisplayMode.MULTI).sort(SortOrder.DESCENDING))
    )
    for index, query in enumerate(spec.queries):
        built = built.with_target(
            Dataquery()
            .datasource(DATASOURCE)
            .expr(query.expr)
            .legend_format(query.legend)
            .ref_id(chr(ord("A") + index))
        )
    return built


def build() -> Dashboard:
    dashboard = (
        Dashboard("Staffetta overview")
        .uid("staffetta")
        .description("SMTP relay: traffic in, delivery outcomes, latency, queues, bounces, errors.")
        .tags(["staffetta", "smtp"])
        .editable()
        .tooltip(DashboardCursorSync.CROSSHAIR)
        .refresh("30s")
        .time("now-6h", "now")
        .timezone("browser")
        .variables(variables())
    )
    panel_id = 1
    for row in rows():
        dashboard = dashboard.with_row(Row(row.title).id(panel_id))
        panel_id += 1
        for spec in row.panels:
            dashboard = dashboard.with_panel(panel(spec, panel_id))
            panel_id += 1
    return dashboard


def render() -> str:
    return json.dumps(build().build(), cls=JSONEncoder, indent=2, sort_keys=True) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if the JSON is out of date")
    parser.add_argument("--output", type=Path, default=OUTPUT)
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        current = args.output.read_text() if args.output.exists() else ""
        if current != text:
            print(f"{args.output} is out of date: run {COMMAND}", file=sys.stderr)
            return 1
        return 0
    args.output.write_text(text)
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
