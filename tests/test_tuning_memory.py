"""`tuning.memory.existing_objects_frozen`: collections skip what existed before, not after."""

import gc
import weakref

from tuning import memory


class _Node:
    pass


def _cycle():
    """An object kept alive only by a reference cycle, and a weak reference to it."""
    node = _Node()
    node.self = node
    return weakref.ref(node), node


def test_garbage_made_inside_is_collected_inside_and_old_garbage_after():
    assert gc.get_freeze_count() == 0
    old_ref, old = _cycle()
    with memory.existing_objects_frozen():
        assert gc.get_freeze_count() > 0
        del old  # garbage now, but frozen: the walks inside skip it
        new_ref, new = _cycle()
        del new
        gc.collect()
        assert new_ref() is None  # what the block made is freed at once
        assert old_ref() is not None
    assert gc.get_freeze_count() == 0
    gc.collect()
    assert old_ref() is None  # freed by the first collection after the block


def test_unfrozen_on_error_and_a_callers_freeze_left_alone():
    try:
        with memory.existing_objects_frozen():
            raise KeyError("boom")
    except KeyError:
        pass
    assert gc.get_freeze_count() == 0

    gc.freeze()  # the caller's own freeze
    try:
        frozen = gc.get_freeze_count()
        with memory.existing_objects_frozen():
            assert gc.get_freeze_count() == frozen
        assert gc.get_freeze_count() == frozen  # not unfrozen by us
    finally:
        gc.unfreeze()
