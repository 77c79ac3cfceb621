"""A nameko service that records the labels it is sent, one call at a time (max_workers 1, so
it takes its queue's messages in order): test_rpc_expiry.py stops it, lets a call to it time
out, starts it again and asks what it carried out."""

from nameko.rpc import rpc

CARRIED_OUT: list[str] = []


class ExpiryProbe:
    name = "expiry_probe"

    @rpc
    def record(self, label):
        CARRIED_OUT.append(label)
        return label

    @rpc
    def carried_out(self):
        return CARRIED_OUT
