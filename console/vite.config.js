import { defineConfig } from 'vite'
import vue from '@vitejs/plugin-vue'

// Served by the gateway at /console/ (CONSOLE_DIR); `npm run dev` proxies the API to a local `make run`.
export default defineConfig({
  base: '/console/',
  plugins: [vue()],
  build: {
    chunkSizeWarningLimit: 1500,
    rollupOptions: {
      output: {
        // Libraries change less often than the console: browsers keep their chunks cached.
        manualChunks: { echarts: ['echarts/core', 'echarts/charts', 'echarts/components', 'echarts/renderers'],
                        'element-plus': ['element-plus'] },
      },
    },
  },
  server: { proxy: { '/api': 'http://127.0.0.1:8080' } },
})
