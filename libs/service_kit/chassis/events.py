"""`@consumes`: an integration event applied once, in a transaction with its inbox record.

    @consumes("member", "member.registered", MemberRegistered)
    def on_member_registered(self, uow, data):
        ...

validates the event's data against the contract model (an event that does not fit is
retried and then dead-lettered, see consumer.py), then runs the method in one transaction that
records the event id in the inbox: a redelivered event changes nothing."""

from .consumer import integration_event_handler


def consumes(source: str, event_type: str, model=None):
    def decorate(method):
        handler_name = method.__name__

        def handle(self, event):
            data = model.model_validate(event.data) if model is not None else event.data
            self.store.apply_event(handler_name, event, lambda uow: method(self, uow, data))

        handle.__name__ = handle.__qualname__ = handler_name
        handle.__doc__ = method.__doc__
        return integration_event_handler(source, event_type)(handle)
    return decorate
