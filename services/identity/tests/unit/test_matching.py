import pytest

from cdp_identity.matching import Attributes, blocking_keys, edit_distance, extract, jaro_winkler, score, soundex


def test_extract_reads_segment_traits_and_variants():
    a = extract(
        {
            "firstName": "Li",
            "lastName": "Lei",
            "birthday": "1990-05-17",
            "phone": "+86 139-1234-5678",
            "address": {"street": "88 Nanjing Rd.", "city": "Shanghai", "postalCode": "200001", "state": "SH"},
        }
    )
    assert a == Attributes("li", "lei", "19900517", "8613912345678"[-11:], "88 nanjing rd", "shanghai", "200001", "sh")
    assert extract({"name": "Han Meimei"}) == Attributes(given_name="han", family_name="meimei")
    assert extract({"tier": "gold"}).empty()


@pytest.mark.parametrize(
    ("a", "b", "low", "high"),
    [("martha", "marhta", 0.96, 0.97), ("dixon", "dicksonx", 0.81, 0.82), ("same", "same", 1.0, 1.0), ("", "x", 0, 0)],
)
def test_jaro_winkler_matches_the_textbook_values(a, b, low, high):
    assert low <= jaro_winkler(a, b) <= high


def test_edit_distance_counts_transpositions_once():
    assert edit_distance("19900517", "19900571") == 1
    assert edit_distance("abc", "abc") == 0
    assert edit_distance("kitten", "sitting", limit=5) == 3


def test_soundex():
    assert [soundex(w) for w in ("robert", "rupert", "tymczak", "pfister", "")] == ["r163", "r163", "t522", "p236", ""]


def test_typos_score_high_and_strangers_low():
    record = Attributes(
        "michaela", "neumann", "19151111", "5304218", "8 stanley street", "winston hills", "4223", "nsw"
    )
    typo = Attributes("michaela", "neuman", "19151111", "5304219", "8 stanley st", "winston hils", "4223", "nsw")
    stranger = Attributes(
        "courtney", "painter", "19161214", "4066625", "12 pinkerton circuit", "richlands", "4560", "vic"
    )
    same_town = Attributes(
        "michael", "newton", "19700101", "1234567", "9 stanley street", "winston hills", "4223", "nsw"
    )
    total, comparisons = score(record, typo)
    assert total > 20 and {c.field: c.level for c in comparisons}["family_name"] == "close"
    assert score(record, stranger)[0] < 0
    assert score(record, same_town)[0] < 14  # the default threshold
    assert set(blocking_keys(record)) & set(blocking_keys(typo))
