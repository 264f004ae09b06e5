"""Regenerates the model table shipped with the package (src/mlpvision/models/zoo.json, which `mlpvision models`
reads) from the registry, and the generated parts of README.md: that model table, the deploy summary from
docs/deploy_speed.json and the quick-start times from docs/cli_speed.json (between their start/end markers)."""

import json
from pathlib import Path

from mlpvision.cli.models import markdown_table, zoo_rows
from mlpvision.models.zoo import write_zoo_table

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DEPLOY = ROOT / "docs" / "deploy_speed.json"
CLI_SPEED = ROOT / "docs" / "cli_speed.json"


def quick_start_summary(path: Path = CLI_SPEED) -> str:
    """The wall times of the first commands a newcomer runs, and the quick run's split, from docs/cli_speed.json."""
    if not path.is_file():
        return "Not measured yet: `python benchmarks/cli_speed.py`.\n"
    rows = json.loads(path.read_text())["rows"]
    lines = ["| command | wall time (median) |", "|---|---:|"]
    lines += [f"| `{r['command']}` | {r['median_s']:.2f} s |" for r in rows]
    q = rows[-1]
    lines += [
        "",
        f"The quick run: training {q['train_seconds']:.1f} s, validation {q['val_seconds']:.1f} s, test "
        f"{q['test_seconds']:.1f} s; {q['test_top1_final']:.1f}% test top-1 after one epoch on 500 images.",
    ]
    return "\n".join(lines) + "\n"


def deploy_summary(path: Path = DEPLOY) -> str:
    """One line per model size: the fastest backend measured, its latency, and its speed-up over eager."""
    if not path.is_file():
        return "Not measured yet: `python benchmarks/deploy_speed.py`.\n"
    rows = json.loads(path.read_text())["rows"]
    lines = [
        "| model | batch | threads | fastest form | ms | vs our eager | vs timm eager |",
        "|---|---:|---:|---|---:|---:|---:|",
    ]
    for name in dict.fromkeys(r["model"] for r in rows["large"] if r["impl"] == "mlpvision"):
        ours = [r for r in rows["large"] if r["model"] == name and r["impl"] == "mlpvision"]
        eager = next(r for r in ours if r["backend"] == "eager")
        best = min(ours, key=lambda r: r["median_ms"])
        lines.append(
            f"| `{name}` | {best['batch_size']} | {best['threads']} | {best['backend']} | "
            f"{best['median_ms']:.1f} | {eager['median_ms'] / best['median_ms']:.2f}x | "
            f"{best['ratio_vs_timm']:.2f}x |"
        )
    for r in rows["small"]:
        if r.get("best"):
            eager = next(
                e
                for e in rows["small"]
                if e["model"] == r["model"] and e["threads"] == r["threads"] and e["backend"] == "eager"
            )
            lines.append(
                f"| `{r['model']}` | 1 | {r['threads']} | {r['backend']} | {r['median_ms']:.2f} | "
                f"{eager['median_ms'] / r['median_ms']:.2f}x | - |"
            )
    return "\n".join(lines) + "\n"


def replace_between(text: str, start: str, end: str, body: str) -> str:
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    return head + start + body + end + tail


def main() -> None:
    print(f"wrote {write_zoo_table().relative_to(ROOT)}")
    text = README.read_text()
    text = replace_between(text, "<!-- models:start -->\n", "<!-- models:end -->", markdown_table(zoo_rows()))
    text = replace_between(text, "<!-- deploy:start -->\n", "<!-- deploy:end -->", deploy_summary())
    text = replace_between(text, "<!-- quickstart:start -->\n", "<!-- quickstart:end -->", quick_start_summary())
    README.write_text(text)
    print(f"updated {README.name}")


if __name__ == "__main__":
    main()
