"""Regenerates the model table in README.md from the registry (between the models:start/end markers)."""

from pathlib import Path

from mlpvision.models.zoo import describe_models, markdown_table

README = Path(__file__).resolve().parents[1] / "README.md"
START, END = "<!-- models:start -->\n", "<!-- models:end -->"


def main() -> None:
    text = README.read_text()
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    README.write_text(head + START + markdown_table(describe_models()) + END + tail)
    print(f"updated {README.name}")


if __name__ == "__main__":
    main()
