"""How a batch's messages are settled by the broker's acks and nacks (``multiple`` settles every
delivery tag up to its own), without a broker."""
from services.common.confirms import Batch


def batch(size, first_tag=1):
    settled = Batch(size)
    settled.first_tag = first_tag
    return settled


def test_a_multiple_ack_settles_every_tag_up_to_its_own():
    settled = batch(5, first_tag=11)
    settled.settle(13, multiple=True, acked=True)
    assert (settled.outcome, settled.unsettled) == ([True, True, True, None, None], 2)
    settled.settle(15, multiple=True, acked=True)
    assert (settled.outcome, settled.unsettled) == ([True] * 5, 0)


def test_a_nack_settles_only_what_it_names_and_an_ack_does_not_undo_it():
    settled = batch(4)
    settled.settle(2, multiple=False, acked=False)
    settled.settle(4, multiple=True, acked=True)
    assert (settled.outcome, settled.unsettled) == ([True, False, True, True], 0)


def test_tags_of_an_earlier_batch_on_the_channel_are_ignored():
    settled = batch(2, first_tag=101)
    settled.settle(100, multiple=True, acked=True)
    settled.settle(99, multiple=False, acked=False)
    assert (settled.outcome, settled.unsettled) == ([None, None], 2)
