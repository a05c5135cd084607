"""The cluster-table command and its outputs (pixsort.cli.table_cmd, pixsort.report.table_report)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.spatial.distance import pdist
from sklearn.metrics import adjusted_rand_score
from typer.testing import CliRunner

from pixsort.cli import app
from pixsort.cluster.table.views import principal_coordinates

SUPERHERO = Path(__file__).resolve().parents[2] / "shared" / "data" / "superhero"
runner = CliRunner()


@pytest.fixture(scope="module")
def hero_files(tmp_path_factory) -> tuple[Path, Path]:
    """A small powers table in the shape of the real one (CRLF, BOM, TRUE/FALSE), with a
    duplicated name and a hero without powers, plus an information table to join."""
    rng = np.random.default_rng(0)
    groups = {
        "brick": ["Strength", "Durability", "Stamina"],
        "psychic": ["Telepathy", "Telekinesis", "Flight"],
        "soldier": ["Marksmanship", "Stealth", "Weapons"],
    }
    powers = [p for group in groups.values() for p in group]
    lines = ["hero_names," + ",".join(powers)]
    info = [",name,Publisher,Alignment,Weight"]
    for i in range(60):
        group = list(groups)[i % 3]
        has = {p: (p in groups[group]) != (rng.random() < 0.05) for p in powers}
        name = "Twin" if i in (3, 4) else f"{group}-{i}"
        lines.append(name + "," + ",".join("TRUE" if has[p] else "FALSE" for p in powers))
        publisher = "Marvel" if group == "brick" else ("DC" if i % 2 else "Marvel")
        info.append(f"{i},{name},{publisher},{'good' if i % 4 else 'bad'},{-99 if i % 7 == 0 else 60 + i}")
    lines.append("Nobody," + ",".join(["FALSE"] * len(powers)))
    folder = tmp_path_factory.mktemp("heroes")
    csv = folder / "powers.csv"
    csv.write_bytes(b"\xef\xbb\xbf" + "\r\n".join(lines).encode() + b"\r\n")
    joined = folder / "info.csv"
    joined.write_text("\n".join(info) + "\n")
    return csv, joined


def run(*args: str):
    return runner.invoke(app, ["cluster-table", *map(str, args)])


def test_cluster_table_writes_every_output(hero_files, tmp_path):
    csv, info = hero_files
    out = tmp_path / "out"
    result = run(
        csv,
        "--id",
        "hero_names",
        "--out",
        out,
        "--join",
        info,
        "--on",
        "name",
        "--k-max",
        "5",
        "--stability-runs",
        "2",
        "--noun",
        "heroes",
    )
    assert result.exit_code == 0, result.output
    for name in [
        "clusters.csv",
        "profiles.csv",
        "clusters_summary.csv",
        "k_scores.csv",
        "attributes_by_cluster.csv",
        "prevalence_heatmap.png",
        "map_2d.png",
        "k_scores.png",
        "report.html",
    ]:
        assert (out / name).stat().st_size > 0, name
    assert "Report:" in result.output and "report.html" in result.output.replace("\n", "")  # rich wraps long paths

    clusters = pd.read_csv(out / "clusters.csv")
    assert len(clusters) == 61  # every input row, the duplicated name twice
    assert clusters.loc[clusters["hero_names"] == "Twin", "duplicated_id"].tolist() == [True, True]
    nobody = clusters.set_index("hero_names").loc["Nobody"]
    assert nobody["cluster"] == -1 and nobody["status"] == "no true feature"
    clustered = clusters[clusters["cluster"] >= 0]
    assert clustered["cluster"].nunique() == 3
    # the planted groups come back (one noisy hero may stray)
    named = clustered[clustered["hero_names"] != "Twin"]
    assert adjusted_rand_score(named["hero_names"].str.split("-").str[0], named["cluster"]) >= 0.9

    profiles = pd.read_csv(out / "profiles.csv")
    assert {"lift", "q_value", "prevalence", "prevalence_overall"} <= set(profiles.columns)
    attributes = pd.read_csv(out / "attributes_by_cluster.csv")
    assert set(attributes["attribute"]) == {"Publisher", "Alignment", "Weight"}
    html = (out / "report.html").read_text()
    assert "Joined attributes by cluster" in html and "prevalence_heatmap.png" in html
    assert "1 rows have no true feature" in html and "Twin x2" in html


def test_agglomerative_adds_a_dendrogram(hero_files, tmp_path):
    csv, _ = hero_files
    result = run(
        csv,
        "--id",
        "hero_names",
        "--out",
        tmp_path,
        "--method",
        "agglomerative",
        "--metric",
        "hamming",
        "--k",
        "3",
        "--stability-runs",
        "0",
    )
    assert result.exit_code == 0, result.output
    assert (tmp_path / "dendrogram.png").stat().st_size > 0
    assert not (tmp_path / "k_scores.png").exists()  # k was given


def test_compare_adds_a_method_table(hero_files, tmp_path):
    csv, _ = hero_files
    result = run(csv, "--id", "hero_names", "--out", tmp_path, "--k-max", "4", "--stability-runs", "0", "--compare")
    assert result.exit_code == 0, result.output
    methods = pd.read_csv(tmp_path / "methods.csv")
    assert len(methods) == 8 and methods["silhouette_jaccard"].notna().all()
    assert "Method comparison" in (tmp_path / "report.html").read_text()


@pytest.mark.parametrize(
    "args, message",
    [
        (["missing.csv", "--id", "x"], "path does not exist"),
        (["{csv}", "--id", "hero", "--join", "nowhere.csv"], "path does not exist"),
        (["{csv}", "--id", "no_such_column"], "id column 'no_such_column' not in the table"),
        (["{csv}", "--id", "hero_names", "--method", "magic"], "'method' parameter"),
        (["{csv}", "--id", "hero_names", "--join", "{info}", "--on", "nope"], "join column 'nope'"),
    ],
)
def test_bad_input_is_a_clear_message_and_exit_code_2(hero_files, tmp_path, args, message):
    csv, info = hero_files
    args = [a.format(csv=csv, info=info) for a in args]
    result = run(*args, "--out", tmp_path)
    assert result.exit_code == 2
    assert message in " ".join(result.output.split())


def test_principal_coordinates_recover_euclidean_layouts():
    points = np.random.default_rng(0).normal(size=(30, 2)) * [5, 1]
    coords = principal_coordinates(np.sqrt(((points[:, None] - points[None]) ** 2).sum(-1)))
    assert coords.shape == (30, 2)
    np.testing.assert_allclose(pdist(coords), pdist(points), atol=1e-8)


@pytest.mark.skipif(not SUPERHERO.is_dir(), reason=f"superhero data not found at {SUPERHERO}")
def test_superheroes_end_to_end(tmp_path):
    result = run(
        SUPERHERO / "super_hero_powers.csv",
        "--id",
        "hero_names",
        "--out",
        tmp_path,
        "--join",
        SUPERHERO / "heroes_information.csv",
        "--on",
        "name",
        "--k",
        "4",
        "--stability-runs",
        "0",
    )
    assert result.exit_code == 0, result.output
    clusters = pd.read_csv(tmp_path / "clusters.csv")
    assert len(clusters) == 667 and (clusters["cluster"] >= 0).all()
    summary = pd.read_csv(tmp_path / "clusters_summary.csv")
    # the strong, the flying/cosmic and the skilled fighters are told apart by their powers
    defining = " | ".join(summary["defining"].fillna(""))
    for power in ["Super Strength", "Energy Blasts", "Weapons Master"]:
        assert power in defining
    attributes = pd.read_csv(tmp_path / "attributes_by_cluster.csv")
    assert {"Publisher", "Alignment", "Gender"} <= set(attributes["attribute"])


def test_a_table_of_numbers_and_categories_clusters_too(tmp_path):
    rng = np.random.default_rng(1)
    truth = np.repeat([0, 1, 2], 30)
    centres = np.array([[150.0, 50.0], [180.0, 90.0], [200.0, 140.0]])
    values = centres[truth] + rng.normal(scale=4.0, size=(90, 2))
    kind = np.array(["elf", "human", "troll"])[truth]
    rows = [f"p{i},{h:.1f},{w:.1f},{k}" for i, ((h, w), k) in enumerate(zip(values, kind))]
    rows[5] = "p5,-99,-,elf"  # missing height and weight
    csv = tmp_path / "people.csv"
    csv.write_text("\n".join(["id,height,weight,kind", *rows]) + "\n")
    result = run(csv, "--id", "id", "--out", tmp_path / "out", "--k-max", "5", "--stability-runs", "2")
    assert result.exit_code == 0, result.output
    clusters = pd.read_csv(tmp_path / "out" / "clusters.csv")
    assert adjusted_rand_score(truth, clusters["cluster"]) >= 0.9
    profiles = pd.read_csv(tmp_path / "out" / "profiles.csv")
    assert set(profiles.loc[profiles["kind"] == "numeric", "feature"]) == {"height", "weight"}
    assert "kind=troll" in set(profiles["feature"])


def test_hdbscan_that_finds_nothing_still_reports(tmp_path):
    noise = np.random.default_rng(0).random((40, 8)) < 0.5
    csv = tmp_path / "noise.csv"
    rows = [f"r{i}," + ",".join("TRUE" if v else "FALSE" for v in row) for i, row in enumerate(noise)]
    csv.write_text("\n".join(["id," + ",".join(f"f{j}" for j in range(8)), *rows]))
    result = run(
        csv,
        "--id",
        "id",
        "--out",
        tmp_path / "out",
        "--method",
        "hdbscan",
        "--min-cluster-size",
        "30",
        "--stability-runs",
        "0",
    )
    assert result.exit_code == 0, result.output
    clusters = pd.read_csv(tmp_path / "out" / "clusters.csv")
    assert (clusters["status"] == "noise").all() and len(clusters) == 40
    assert "HDBSCAN found no cluster" in (tmp_path / "out" / "report.html").read_text()
