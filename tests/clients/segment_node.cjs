// Drives @segment/analytics-node through the scenario of tests/clients/scenario.py.
// Usage: node segment_node.cjs BASE_URL WRITE_KEY SDK_NAME; prints "ok" or the error.
const { Analytics } = require('@segment/analytics-node')

const [url, writeKey, sdk] = process.argv.slice(2)
const userId = `user-${sdk}`
const errors = []
const analytics = new Analytics({ writeKey, host: url, maxRetries: 1, flushInterval: 200 })
analytics.on('error', (err) => errors.push(String(err && (err.reason || err.message || err))))

analytics.identify({
  userId,
  anonymousId: `anon-${sdk}`,
  traits: { email: 'ada@example.com', plan: 'pro', seats: 3 },
})
for (let i = 0; i < 2; i++) {
  analytics.track({
    userId,
    event: 'Order Completed',
    properties: { revenue: 42.5, currency: 'EUR' },
    timestamp: new Date('2026-01-02T03:04:05Z'),
    messageId: `order-${sdk}-1`,
  })
}
analytics.page({ userId, name: 'Pricing', properties: { path: '/pricing' } })
analytics.screen({ userId, name: 'Home' })
analytics.group({ userId, groupId: `acme-${sdk}`, traits: { name: 'Acme', employees: 50 } })
analytics.alias({ userId, previousId: `old-${sdk}` })

analytics.closeAndFlush({ timeout: 10000 }).then(() => {
  if (errors.length) {
    console.log('errors: ' + errors.join('; '))
    process.exit(1)
  }
  console.log('ok')
})
