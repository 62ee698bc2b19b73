"""People's rules on plain values: who manages an actor's members, who looks persons up, which actors a contact
address may claim and until when, and the gateway's sign-in helpers (roles, return paths, mails)."""

from __future__ import annotations

import uuid

import pytest

from gateway import sessions
from services.common.auth import Principal, Role, ServiceIdentity
from services.common.errors import Forbidden, Unauthenticated
from services.common.settings import Settings
from services.directory import rules
from services.directory.model import ActorOrigin, Contact, MemberRole

ACTOR_ID = str(uuid.uuid4())
PERSON_ID = uuid.uuid4()
MEMBER = Principal(subject=f"person:{PERSON_ID}", role=Role.ACTOR, actor_id=ACTOR_ID)
ADMIN = Principal(subject="admin:x", role=Role.ADMIN)


def test_members_are_managed_by_admins_and_the_actors_own_admin_members() -> None:
    rules.require_members_manager(ADMIN, ACTOR_ID, None)
    rules.require_members_manager(MEMBER, ACTOR_ID, MemberRole.admin)
    for principal, own_role in (
        (MEMBER, MemberRole.member.value),  # a plain member
        (MEMBER, None),  # no membership (removed since the session began)
        (Principal(subject=f"person:{PERSON_ID}", role=Role.ACTOR, actor_id=str(uuid.uuid4())), "admin"),
        (Principal(subject="p", role=Role.PARTNER, scopes=frozenset({rules.WRITE_SCOPE})), None),
    ):
        with pytest.raises(Forbidden, match="manages its members"):
            rules.require_members_manager(principal, ACTOR_ID, own_role)


def test_a_person_is_a_callers_subject_only_when_it_names_one() -> None:
    assert rules.person_of(MEMBER) == PERSON_ID
    assert rules.person_of(ADMIN) is None
    assert rules.person_of(Principal(subject="person:not-an-id", role=Role.ADMIN)) is None


def test_persons_are_looked_up_by_the_gateways_identity_only() -> None:
    rules.require_gateway(ServiceIdentity("gateway"))
    with pytest.raises(Unauthenticated):
        rules.require_gateway(None)
    for caller in (ServiceIdentity("matching"), ADMIN, MEMBER):
        with pytest.raises(Forbidden, match="gateway"):
            rules.require_gateway(caller)


def test_staff_registered_and_imported_actors_are_claimable_and_self_registered_ones_are_not() -> None:
    assert rules.origin_of(ADMIN) is ActorOrigin.staff
    assert rules.origin_of(Principal(subject="p", role=Role.PARTNER)) is ActorOrigin.partner
    assert set(rules.CLAIMABLE_ORIGINS) == {ActorOrigin.staff, ActorOrigin.imported}
    assert ActorOrigin.self_registered not in rules.CLAIMABLE_ORIGINS


def test_a_new_contact_address_voids_claims_and_a_claim_holds_only_while_its_address_does() -> None:
    old, new = Contact(email="Contact@Asso.fr"), Contact(email="autre@asso.fr")
    assert not rules.contact_address_changed(old, Contact(email="contact@asso.fr", phone="0102030405"))
    assert rules.contact_address_changed(old, new)
    assert rules.contact_address_changed(old, None) and rules.contact_address_changed(None, new)
    assert rules.claim_still_valid("pending", "active", "contact@asso.fr", "CONTACT@asso.fr")
    assert not rules.claim_still_valid("void", "active", "contact@asso.fr", "contact@asso.fr")
    assert not rules.claim_still_valid("confirmed", "active", "contact@asso.fr", "contact@asso.fr")
    assert not rules.claim_still_valid("pending", "archived", "contact@asso.fr", "contact@asso.fr")
    assert not rules.claim_still_valid("pending", "active", "autre@asso.fr", "contact@asso.fr")
    assert not rules.claim_still_valid("pending", "active", None, "contact@asso.fr")


def test_a_local_authoritys_member_acts_as_collectivity_and_others_as_actor() -> None:
    assert sessions.role_for("local_authority") is Role.COLLECTIVITY
    for kind in ("association", "cooperative", "siae", "third_place"):
        assert sessions.role_for(kind) is Role.ACTOR


@pytest.mark.parametrize(
    ("path", "kept"),
    [
        ("/besoins/12", "/besoins/12"),
        ("/", "/"),
        ("//evil.example/x", None),
        ("/\\evil.example", None),
        ("https://evil.example/", None),
        ("besoins", None),
        ("/a\nb", None),
        ("/" + "a" * 600, None),
        (None, None),
    ],
)
def test_after_sign_in_a_person_returns_to_a_path_of_this_site_only(path: str | None, kept: str | None) -> None:
    assert sessions.safe_next(path) == kept


def test_the_sign_in_mail_is_french_and_says_how_long_the_link_lasts() -> None:
    plain = sessions.sign_in_mail("Claire", "http://127.0.0.1/connexion/lien?jeton=x")
    assert plain.subject == "Votre lien de connexion à Maillage"
    assert "Bonjour Claire," in plain.body and "15 minutes" in plain.body and "jeton=x" in plain.body
    invited = sessions.sign_in_mail(None, "http://u", invited_to="Ville de Dole")
    assert invited.subject == "Invitation à rejoindre Ville de Dole sur Maillage" and invited.body.startswith(
        "Bonjour,"
    )


def test_link_tokens_are_kept_as_hashes_and_addresses_as_keyed_hashes() -> None:
    assert sessions.token_hash("abc") == sessions.token_hash("abc") != sessions.token_hash("abd")
    assert len(sessions.token_hash("abc")) == 32
    one, other = Settings(_env_file=None, internal_key="k1"), Settings(_env_file=None, internal_key="k2")
    assert sessions.address_key(one, " A@B.fr") == sessions.address_key(one, "a@b.fr")  # one address, any case
    assert sessions.address_key(one, "a@b.fr") != sessions.address_key(other, "a@b.fr")  # keyed
    assert b"a@b.fr" not in sessions.address_key(one, "a@b.fr")
