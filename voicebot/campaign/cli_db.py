"""What every ``voicebot campaign`` action shares: the database options, opening the store, finding a campaign.

The database is ``--db URL``, else ``campaigns.db`` of ``--config FILE`` (or of ``./voicebot.yaml`` when there is
one), else ``./voicebot-campaigns.sqlite``.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeAlias

from voicebot.campaign.db import CampaignStoreError
from voicebot.campaign.store import Campaign, CampaignStore
from voicebot.cli_checks import check_text_file
from voicebot.cli_errors import UsageError
from voicebot.yamldoc import did_you_mean

DEFAULT_DB = "voicebot-campaigns.sqlite"
DEFAULT_CONFIG = Path("voicebot.yaml")
LIST_FIX = "list the campaigns with `voicebot campaign list`"
Sub: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


def action(actions: Sub, name: str, help_text: str) -> argparse.ArgumentParser:
    """An action with the database options."""
    a: argparse.ArgumentParser = actions.add_parser(name, help=help_text, description=help_text)
    a.add_argument("--db", metavar="URL", help=f"campaign database: a path, sqlite:///PATH or postgresql://... "
                   f"(default: campaigns.db of --config, else ./{DEFAULT_DB})")
    a.add_argument("--config", type=Path, default=None, help="engine configuration to take campaigns.db from "
                   f"(default ./{DEFAULT_CONFIG} when it exists)")
    return a



def location(args: argparse.Namespace) -> str:
    """Where the campaign database is (see the module docstring)."""
    if args.db:
        return str(args.db)
    config = args.config if args.config is not None else (DEFAULT_CONFIG if DEFAULT_CONFIG.is_file() else None)
    if config is None:
        return DEFAULT_DB
    from voicebot.config import load_config

    check_text_file(config, "config file", "name the engine's config with --config, or give --db")
    campaigns = load_config(config).campaigns
    return campaigns.db if campaigns is not None else DEFAULT_DB


@contextmanager
def opened(args: argparse.Namespace, *, create: bool = False) -> Iterator[CampaignStore]:
    """The store; a missing SQLite file is an error unless ``create``; database errors become one line."""
    where = location(args)
    if "://" not in where or where.startswith("sqlite:///"):
        path = Path(where.removeprefix("sqlite:///"))
        if path.is_dir():
            raise UsageError(f"{path}: a directory, not a campaign database; give a file with --db")
        if not create and not path.exists():
            raise UsageError(f"{path}: no campaign database there; create a campaign first (`voicebot campaign create "
                             "FILE`), or name the database with --db or campaigns.db in --config")
    try:
        store = CampaignStore(where)
    except CampaignStoreError as exc:
        raise UsageError(f"{exc}; check --db (a SQLite file or a postgresql:// URL) and that the database is up") from None
    try:
        yield store
    except CampaignStoreError as exc:
        raise UsageError(f"{exc}; check the database, then run the command again") from None
    finally:
        store.close()


def find(store: CampaignStore, campaign_id: str) -> Campaign:
    """The campaign, or a UsageError naming it with the fix."""
    try:
        return store.campaign(campaign_id)
    except CampaignStoreError as exc:
        if "no campaign" not in str(exc):
            raise
        ids = [c.id for c, _ in store.campaigns()]
        hint = did_you_mean(campaign_id, ids)
        raise UsageError(f"campaign {campaign_id}: no such campaign in {store.db.location}"
                         f"{' (' + hint + ')' if hint else ''}; {LIST_FIX}") from None
