"""The Twilio backend: webhooks (TwiML), the recording client, the TwiML codec."""
