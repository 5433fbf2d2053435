from utils.exercises import check


def test_check_reports_each_outcome(capsys):
    def unsolved():
        raise NotImplementedError

    def wrong():
        assert 1 + 1 == 3, "1 + 1 should be 3 here"

    def crashing():
        return [][0]

    assert check("E1", unsolved) is False
    assert check("E2", wrong) is False
    assert check("E3", crashing) is False
    assert check("E4", lambda: None) is True
    out = capsys.readouterr().out
    parts = [out.index(f"E{i}:") for i in range(1, 5)]
    e1, e2, e3, e4 = (out[a:b] for a, b in zip(parts, parts[1:] + [len(out)]))
    assert "not attempted" in e1
    assert "not right yet" in e2 and "1 + 1 should be 3" in e2
    assert "IndexError" in e3
    assert "solved" in e4
