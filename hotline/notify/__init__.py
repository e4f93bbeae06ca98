"""Customer notifications, whatever the channel.

- `outbox`: the history entries a customer must hear about become `Notification`
  rows, sent at least once (claimed before sending, a lease for a dead worker,
  backoff while a server is down);
- `channel`: the interface every channel implements, and `DeliveryError`;
- `registry`: the channels, in the order they are preferred for a customer;
- `email`, `sms`: the channels that exist.

A new channel (Telegram, a messenger) is one new package implementing
`channel.NotificationChannel` and one line in `registry.CHANNELS`.
"""
