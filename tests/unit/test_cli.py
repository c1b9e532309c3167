"""`lw`: the command line's own behaviour (the commands' work is tested where it is done)."""

from __future__ import annotations


def test_lw_sources_refuses_a_shop_that_is_not_the_embedded_one(tmp_path, monkeypatch, capsys):
    """SHOP_DB_URL is meant for a real shop: simulating there would drop its tables."""
    from lifecycle_warehouse import cli

    monkeypatch.setenv("LW_PGDATA", str(tmp_path / "pgdata"))
    monkeypatch.setenv("LANDING_DIR", str(tmp_path / "landing"))
    monkeypatch.setenv("SHOP_DB_URL", "postgresql://shop_reader:s3cret@shop.example.com:5432/shop")
    assert cli.main(["sources", "--days", "1", "--customers", "10"]) == 2
    out = capsys.readouterr().out
    assert "refusing to simulate into the shop database" in out and "--i-know-this-drops-tables" in out
    assert "host=shop.example.com" in out and "s3cret" not in out
    assert not (tmp_path / "landing").exists(), "nothing was written"


def test_a_url_is_embedded_only_when_it_is_the_embedded_servers_socket(tmp_path):
    from lifecycle_warehouse import embedded

    pgdata = tmp_path / "pgdata"
    assert embedded.is_embedded(f"postgresql://postgres:@/shop?host={pgdata}", pgdata)
    assert not embedded.is_embedded(f"postgresql://postgres:@/shop?host={tmp_path / 'other'}", pgdata)
    assert not embedded.is_embedded("postgresql://u@db.example.com/shop", pgdata)
    assert not embedded.is_embedded("postgresql:///shop", pgdata)
